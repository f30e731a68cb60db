/* "Two agents, one customer" on the thread page (the server side: inbox/presence.py).
 *
 * Over the staff socket that inbox.js opens (it announces it with "inbox:socket-open"
 * and hands unnumbered frames on as "inbox:frame"):
 *  - presence.watch every HEARTBEAT_MS says "I have this conversation open";
 *  - presence.typing true at most every TYPING_THROTTLE_MS while the reply box is typed
 *    in, false when it is sent, emptied, or left alone for IDLE_MS; nothing is stored in
 *    the database for any of it;
 *  - "presence" frames name the other people viewing and typing, shown in #presence.
 * And the reply box's hidden seen_through: the newest message shown when the agent
 * started writing. While the box is empty it follows the thread; once they type, it
 * stays, so a reply to an older state of the thread is held by the server (409).
 */
(function () {
  "use strict";

  var body = document.body;
  if (body.dataset.page !== "thread") return;
  var CONVERSATION = Number(body.dataset.conversation);
  var ME = Number(body.dataset.user);
  var HEARTBEAT_MS = 5000;
  var TYPING_THROTTLE_MS = 2000;
  var IDLE_MS = 4000;

  var socket = null;
  var typingSentAt = 0;
  var typing = false;
  var idleTimer = null;

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function watch() { send({ type: "presence.watch", conversation: CONVERSATION }); }

  function setTyping(on) {
    clearTimeout(idleTimer);
    if (on) {
      var now = Date.now();
      if (!typing || now - typingSentAt >= TYPING_THROTTLE_MS) {
        send({ type: "presence.typing", typing: true });
        typingSentAt = now;
      }
      typing = true;
      idleTimer = setTimeout(function () { setTyping(false); }, IDLE_MS);
    } else if (typing) {
      typing = false;
      send({ type: "presence.typing", typing: false });
    }
  }

  document.addEventListener("inbox:socket-open", function (e) {
    socket = e.detail;
    typing = false;
    watch();
  });
  var live = window.inboxLive && window.inboxLive.client;
  if (live && live.ws && live.ws.readyState === WebSocket.OPEN) { socket = live.ws; watch(); }
  setInterval(watch, HEARTBEAT_MS);

  // --- who else is here -----------------------------------------------------------
  function names(people) {
    var list = people.map(function (p) { return p.name; });
    if (list.length <= 1) return list.join("");
    return list.slice(0, -1).join(", ") + " and " + list[list.length - 1];
  }

  function show(viewers) {
    var box = document.getElementById("presence");
    if (!box) return;
    var others = viewers.filter(function (v) { return v.user !== ME; });
    var typers = others.filter(function (v) { return v.typing; });
    var watchers = others.filter(function (v) { return !v.typing; });
    var viewing = box.querySelector(".presence-viewing"), typingLine = box.querySelector(".presence-typing");
    viewing.textContent = watchers.length ? names(watchers) + (watchers.length > 1 ? " are viewing" : " is viewing") : "";
    typingLine.textContent = typers.length ? names(typers) + (typers.length > 1 ? " are typing a reply…" : " is typing a reply…") : "";
    viewing.hidden = !watchers.length;
    typingLine.hidden = !typers.length;
    box.hidden = !others.length;
    box.dataset.viewers = others.map(function (v) { return v.user; }).join(",");
  }

  document.addEventListener("inbox:frame", function (e) {
    var frame = e.detail;
    if (frame.type === "presence" && frame.conversation === CONVERSATION && Array.isArray(frame.viewers)) show(frame.viewers);
  });

  // --- the reply box: typing, and what the agent had seen ------------------------------
  function replyBox() { return document.getElementById("reply-text"); }
  function replying() {
    var mode = document.querySelector('#composer input[name="mode"]:checked');
    return !mode || mode.value === "reply";
  }

  function newestShown() {
    var newest = 0;
    document.querySelectorAll('#thread-items > li.msg[id^="m-"]').forEach(function (li) {
      var id = Number(li.id.slice(2));
      if (id > newest) newest = id;
    });
    return newest;
  }

  function followThread() {
    var field = document.getElementById("seen-through"), box = replyBox();
    if (!field || (box && box.value.trim())) return; // writing: keep what they had seen
    var newest = newestShown();
    if (newest) field.value = String(newest);
  }

  document.addEventListener("input", function (e) {
    if (e.target.id !== "reply-text") return;
    if (!e.target.value.trim()) { setTyping(false); followThread(); return; }
    if (replying()) setTyping(true);
  });
  document.addEventListener("submit", function (e) {
    if (e.target.id === "composer") setTyping(false);
  }, true);
  document.body.addEventListener("htmx:afterSwap", function (e) {
    if (e.target.id === "composer" || (e.detail && e.detail.elt && e.detail.elt.id === "composer")) followThread();
    var held = document.getElementById("stale-activity"); // a held send: show what is new
    if (held) held.scrollIntoView({ block: "nearest" });
  });

  var items = document.getElementById("thread-items");
  if (items && window.MutationObserver) new MutationObserver(followThread).observe(items, { childList: true });
  followThread();
})();
