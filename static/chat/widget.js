/* My Hibachi website chat. One tag on any page of the business's website:
     <script src="https://inbox.example.com/static/chat/widget.js" defer data-title="Chat with us"></script>
   No framework. Talks to /ws/chat/<token> on the server the script came from (docs/chat.md).
   The token is made here (32 random bytes) and kept in localStorage, so the conversation survives a
   reload; the server stores only its SHA-256 digest. Every text is shown with textContent (never HTML). */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.myhibachiChat) return;
  var base = new URL(script.src, location.href).origin;
  var title = script.getAttribute("data-title") || "Chat with My Hibachi";
  var KEY = "myhibachi-chat-token", MAX_BYTES = 4096;
  var socket = null, retry = 1000, opened = false, failures = 0, pinger = null, typingTimer = null, seen = {}, pending = {};

  function token() {
    var value = null;
    try { value = localStorage.getItem(KEY); } catch (e) { /* storage blocked: this page only */ }
    if (!value || !/^[A-Za-z0-9_-]{22,128}$/.test(value)) {
      var bytes = new Uint8Array(32);
      crypto.getRandomValues(bytes);
      value = btoa(String.fromCharCode.apply(null, bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
      try { localStorage.setItem(KEY, value); } catch (e) { /* ignore */ }
    }
    return value;
  }
  function randomId() {
    var bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) node.textContent = text;
    return node;
  }

  var css = el("link", {rel: "stylesheet", href: base + "/static/chat/widget.css"});
  document.head.appendChild(css);
  var root = el("div", {"class": "mhc", id: "myhibachi-chat"});
  var launcher = el("button", {type: "button", "class": "mhc-launcher", "aria-expanded": "false",
    "aria-controls": "mhc-panel"}, title);
  var panel = el("section", {"class": "mhc-panel", id: "mhc-panel", role: "dialog", "aria-label": title, hidden: ""});
  var head = el("header", {"class": "mhc-head"});
  head.appendChild(el("h2", {}, title));
  var close = el("button", {type: "button", "class": "mhc-close", "aria-label": "Close chat"}, "×");
  head.appendChild(close);
  var log = el("ol", {"class": "mhc-log", "aria-live": "polite", "aria-label": "Messages"});
  var typing = el("p", {"class": "mhc-typing", "aria-live": "polite"});
  var status = el("p", {"class": "mhc-status", role: "alert"});
  var details = el("details", {"class": "mhc-details"});
  details.appendChild(el("summary", {}, "Leave your name and email so we can reply"));
  var contact = el("form", {"class": "mhc-contact"});
  [["name", "Name", "text", "name"], ["email", "Email", "email", "email"], ["phone", "Phone", "tel", "tel"]]
    .forEach(function (f) {
      var label = el("label", {}, f[1]);
      label.appendChild(el("input", {name: f[0], type: f[2], autocomplete: f[3], maxlength: "200"}));
      contact.appendChild(label);
    });
  contact.appendChild(el("button", {type: "submit"}, "Save"));
  details.appendChild(contact);
  var form = el("form", {"class": "mhc-form"});
  var label = el("label", {"for": "mhc-text", "class": "mhc-hidden"}, "Your message");
  var input = el("textarea", {id: "mhc-text", rows: "2", placeholder: "Type a message…"});
  var send = el("button", {type: "submit"}, "Send");
  form.appendChild(label); form.appendChild(input); form.appendChild(send);
  [head, log, typing, status, details, form].forEach(function (n) { panel.appendChild(n); });
  root.appendChild(launcher); root.appendChild(panel);
  (document.body || document.documentElement).appendChild(root);

  function show(line) {
    if (line.id && seen[line.id]) return;
    var item = line.client_id && pending[line.client_id];
    if (!item) {
      item = el("li");
      log.appendChild(item);
    }
    if (line.client_id) delete pending[line.client_id];
    if (line.id) seen[line.id] = true;
    item.className = "mhc-line mhc-" + (line.from === "staff" ? "staff" : "visitor") + (line.id ? "" : " mhc-pending");
    item.textContent = "";
    if (line.from === "staff") item.appendChild(el("span", {"class": "mhc-who"}, line.agent || "My Hibachi"));
    item.appendChild(el("span", {"class": "mhc-text"}, line.text));
    if (line.from === "staff") typing.textContent = "";
    log.scrollTop = log.scrollHeight;
    return item;
  }

  function connect() {
    var url = base.replace(/^http/, "ws") + "/ws/chat/" + token();
    socket = new WebSocket(url);
    socket.onopen = function () {
      retry = 1000;
      opened = true;
      failures = 0;
      status.textContent = "";
      root.setAttribute("data-state", "live");
      Object.keys(pending).forEach(function (id) { transmit(pending[id].dataset.text, id); });
      clearInterval(pinger);
      pinger = setInterval(function () { if (socket.readyState === 1) socket.send('{"type":"ping"}'); }, 20000);
    };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type === "history") frame.messages.forEach(show);
      else if (frame.type === "message") show(frame);
      else if (frame.type === "typing") {
        typing.textContent = (frame.agent || "Someone") + " is typing…";
        clearTimeout(typingTimer);
        typingTimer = setTimeout(function () { typing.textContent = ""; }, 6000);
      } else if (frame.type === "contact_saved") {
        status.textContent = "Thanks, we have your details.";
        details.open = false;
      } else if (frame.type === "error") status.textContent = frame.message;
    };
    socket.onclose = function (event) {
      root.setAttribute("data-state", "offline");
      clearInterval(pinger);
      // A refused handshake (origin not allowed, rate limit) reaches a page as a bare failure (1006):
      // after three in a row without ever opening, say so and stop.
      failures += 1;
      if (!opened && failures >= 3) { status.textContent = "Chat is not available right now."; return; }
      status.textContent = "Reconnecting…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  function transmit(text, clientId) {
    if (socket && socket.readyState === 1) socket.send(JSON.stringify({type: "message", text: text, client_id: clientId}));
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    if (new TextEncoder().encode(text).length > MAX_BYTES) {
      status.textContent = "That message is too long (4 KB at most); split it in two.";
      return;
    }
    var id = randomId();
    var item = show({client_id: id, from: "visitor", text: text});
    item.dataset.text = text;
    pending[id] = item;
    input.value = "";
    status.textContent = "";
    transmit(text, id);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });
  contact.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!socket || socket.readyState !== 1) return;
    socket.send(JSON.stringify({type: "contact", name: contact.elements.name.value,
      email: contact.elements.email.value, phone: contact.elements.phone.value}));
  });
  function toggle(open) {
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", String(open));
    if (open) { input.focus(); if (!socket) connect(); }
    else launcher.focus();
  }
  launcher.addEventListener("click", function () { toggle(panel.hidden); });
  close.addEventListener("click", function () { toggle(false); });
  panel.addEventListener("keydown", function (event) { if (event.key === "Escape") toggle(false); });
  // A returning visitor (a token already kept) reconnects at once, so staff replies arrive while closed.
  var known = false;
  try { known = !!localStorage.getItem(KEY); } catch (e) { /* ignore */ }
  if (known) connect();
  window.myhibachiChat = {open: function () { toggle(true); }};
})();
