// The composer's SMS counter and opt-out notice (self-contained; the composer markup is in
// templates/inbox/_composer.html). For the channel chosen in "Send by" (attributes of the select,
// named after the channel):
//  - data-max-units-<channel>: the limit in UTF-16 units (what RingCentral counts); shows "n / limit characters
//    · s SMS segments" live (GSM-7: 160 per single text, 153 per part; otherwise 70 / 67 UTF-16 units);
//  - data-refusal-<channel>: why replies on it are refused (the customer texted STOP), shown before anyone writes.
// Listens on the document, so it keeps working when htmx swaps the composer.
(function () {
  "use strict";
  var GSM = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var GSM_EXT = "^{}\\[~]|€";

  function units(text) { return text.length; } // JavaScript strings are UTF-16: an emoji is two

  function segments(text) {
    if (!text) { return 0; }
    var septets = 0, gsm = true;
    for (var i = 0; i < text.length; i++) {
      var ch = text.charAt(i);
      if (GSM.indexOf(ch) >= 0) { septets += 1; }
      else if (GSM_EXT.indexOf(ch) >= 0) { septets += 2; }
      else { gsm = false; break; }
    }
    if (gsm) { return septets <= 160 ? 1 : Math.ceil(septets / 153); }
    var n = units(text);
    return n <= 70 ? 1 : Math.ceil(n / 67);
  }

  function update() {
    var select = document.getElementById("reply-channel");
    var box = document.getElementById("reply-text");
    var counter = document.getElementById("sms-count");
    var refusal = document.getElementById("channel-refusal");
    if (!select || !box) { return; }
    var note = select.getAttribute("data-refusal-" + select.value) || "";
    var isReply = (document.querySelector("#composer input[name=mode]:checked") || {}).value !== "note";
    if (refusal) {
      refusal.textContent = note || "";
      refusal.hidden = !note || !isReply;
    }
    if (!counter) { return; }
    var max = parseInt(select.getAttribute("data-max-units-" + select.value) || "0", 10);
    if (!max || !isReply) { counter.hidden = true; return; }
    var n = units(box.value), s = segments(box.value);
    counter.hidden = false;
    counter.textContent = n.toLocaleString() + " / " + max.toLocaleString() + " characters · " + s + " SMS segment" + (s === 1 ? "" : "s") +
      (n > max ? " · too long: shorten it by " + (n - max).toLocaleString() : "");
    counter.classList.toggle("error", n > max);
  }

  document.addEventListener("input", function (e) { if (e.target && e.target.id === "reply-text") { update(); } });
  document.addEventListener("change", function (e) {
    if (e.target && (e.target.id === "reply-channel" || e.target.name === "mode")) { update(); }
  });
  document.addEventListener("htmx:afterSwap", update);
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", update); } else { update(); }
})();
