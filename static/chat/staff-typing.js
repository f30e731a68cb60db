/* Tells a website chat visitor that staff are typing (channels_ingest/chat/views.py).
   Only while the composer replies on the chat channel; at most one request every 3 s.
   Delegated from the document: htmx replaces the composer after each send. */
(function () {
  "use strict";
  var last = 0;
  document.addEventListener("input", function (event) {
    var text = event.target;
    if (!text || text.id !== "reply-text") return;
    var form = text.closest("form#composer");
    var channel = document.getElementById("reply-channel");
    var mode = form && form.querySelector('input[name="mode"]:checked');
    if (!form || !form.dataset.conversation || (mode && mode.value !== "reply") || !channel || channel.value !== "chat") return;
    var now = Date.now();
    if (now - last < 3000) return;
    last = now;
    var csrf = form.querySelector('input[name="csrfmiddlewaretoken"]');
    fetch("/chat/typing/" + encodeURIComponent(form.dataset.conversation), {method: "POST", credentials: "same-origin",
      headers: {"X-CSRFToken": csrf ? csrf.value : ""}}).catch(function () {});
  });
})();
