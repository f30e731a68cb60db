/* myhibachi staff screens: live updates, keyboard shortcuts, the reply box.
 *
 * Live updates: one socket to /ws/inbox carries small numbered events. The
 * page never trusts an event's data for what it shows: it asks the server for
 * the affected rows or thread items (HTML fragments rendered by the same
 * templates) and swaps them in. Events are numbered; a number that skips
 * ahead, a reconnect, or a socket that was down makes the page read what it
 * missed from GET /api/v1/events?after=N, so nothing is lost when Redis drops
 * a message for a full queue or the network blinks.
 */
(function () {
  "use strict";

  var body = document.body;
  var PAGE = body.dataset.page;
  var ME = Number(body.dataset.user);
  var MY_NAME = body.dataset.username;
  var OVERLAP = 20; // re-read this many numbers below the newest on catch-up (late commits)

  // --- small helpers -------------------------------------------------------
  function qs(sel, root) { return (root || document).querySelector(sel); }
  function qsa(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  function fragment(html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    return t.content;
  }

  function getHTML(url) {
    return fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status + " for " + url);
      return r.text().then(function (text) { return { text: text, headers: r.headers }; });
    });
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status + " for " + url);
      return r.json();
    });
  }

  function processHtmx(el) { if (window.htmx) window.htmx.process(el); }

  // A toast is text (never html: names come from outside) and, with href, a link to open.
  function toast(text, href, linkText) {
    var box = qs("#toasts");
    if (!box) return;
    var p = document.createElement("p");
    p.className = "toast";
    p.textContent = text;
    if (href) {
      var a = document.createElement("a");
      a.href = href;
      a.textContent = linkText || "Open";
      p.appendChild(document.createTextNode(" "));
      p.appendChild(a);
    }
    box.appendChild(p);
    setTimeout(function () { p.remove(); }, 8000);
  }

  // Toasts tell about what others just did: only for events that arrive live on the socket
  // after this page was rendered (never those read again on a reconnect or a page load's
  // catch-up), and never for this person's own actions.
  var PAGE_LATEST = Number(body.dataset.latestEvent) || 0;
  function toastWorthy(event) {
    var d = event.data || {};
    return event.live === true && event.id > PAGE_LATEST && d.by_id !== ME;
  }

  function relative(iso) {
    var then = new Date(iso), secs = (Date.now() - then.getTime()) / 1000;
    if (isNaN(secs)) return "";
    if (secs < 60) return "just now";
    if (secs < 3600) return Math.floor(secs / 60) + " min ago";
    if (secs < 86400) return Math.floor(secs / 3600) + " h ago";
    if (secs < 86400 * 30) return Math.floor(secs / 86400) + " d ago";
    return then.toLocaleDateString(undefined, { month: "short", day: "numeric", year: "numeric" });
  }

  function tickTimes() {
    qsa("time[data-relative]").forEach(function (t) { t.textContent = relative(t.getAttribute("datetime")); });
  }

  function debounce(fn, ms) {
    var timer = null;
    return function () { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  // --- the live connection ---------------------------------------------------
  function Live(latest, onEvent) {
    this.max = latest;          // highest event number seen
    this.seen = new Set();      // numbers applied (duplicates from catch-up are skipped)
    this.onEvent = onEvent;
    this.attempt = 0;
    this.catching = null;
    this.stopped = false;
  }

  // The thread header's History list loads when it is first opened (it costs the page nothing).
  // "toggle" does not bubble: listen in the capture phase.
  document.addEventListener("toggle", function (e) {
    var details = e.target;
    if (details.id !== "conv-history" || !details.open || details.dataset.loaded) return;
    details.dataset.loaded = "1";
    fetch(details.dataset.url, {headers: {"HX-Request": "true"}, credentials: "same-origin"})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) { qs(".history-lines", details).innerHTML = html; })
      .catch(function () { delete details.dataset.loaded; }); // the link stays; opening again retries
  }, true);

  Live.prototype.status = function (state, text) {
    var el = qs("#live-status");
    if (!el) return;
    el.dataset.state = state;
    el.textContent = text;
  };

  Live.prototype.connect = function () {
    var self = this;
    var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/inbox");
    this.ws = ws;
    ws.onopen = function () {
      self.attempt = 0;
      self.status("live", "Live");
      self.catchUp(); // whatever happened between the page render (or the last socket) and now
      // Other features that talk over this socket (static/js/presence.js) start here.
      document.dispatchEvent(new CustomEvent("inbox:socket-open", { detail: ws }));
    };
    ws.onmessage = function (e) {
      var event;
      try { event = JSON.parse(e.data); } catch (err) { return; }
      if (event && typeof event.id === "number") { event.live = true; self.receive(event); }
      // Unnumbered frames (presence) are not events: handed on, never caught up.
      else if (event && typeof event.type === "string") document.dispatchEvent(new CustomEvent("inbox:frame", { detail: event }));
    };
    ws.onclose = function (e) {
      if (self.stopped) return;
      // The server ended this person's access (4401: this session logged out; 4403: no longer
      // staff). Reconnecting would only be refused again: say so and stop.
      if (e.code === 4401 || e.code === 4403) {
        self.stopped = true;
        self.status("ended", e.code === 4401 ? "Signed out — reload to sign in again"
                                             : "Your account no longer has inbox access");
        return;
      }
      // Exponential backoff with jitter: 0.5 s, 1 s, 2 s … capped at 30 s.
      var delay = Math.min(30000, 500 * Math.pow(2, self.attempt)) * (0.5 + Math.random() / 2);
      self.attempt += 1;
      self.status("down", "Reconnecting…");
      setTimeout(function () { self.connect(); }, delay);
    };
  };

  Live.prototype.receive = function (event) {
    if (this.seen.has(event.id)) return;
    var gap = event.id > this.max + 1;
    this.apply(event);
    if (gap) this.catchUp(); // an event in between never reached this socket
  };

  Live.prototype.apply = function (event) {
    this.seen.add(event.id);
    if (this.seen.size > 5000) this.seen = new Set(Array.from(this.seen).slice(-2500));
    if (event.id > this.max) this.max = event.id;
    window.inboxLive.applied += 1;
    try { this.onEvent(event); } catch (err) { console.error(err); }
  };

  Live.prototype.catchUp = function () {
    var self = this;
    if (this.catching) { this.catchAgain = true; return this.catching; }
    var after = Math.max(0, this.max - OVERLAP);
    window.inboxLive.catchUps += 1;
    window.inboxLive.catching = true; // until this read (and any it chains to) has been applied
    function page(from) {
      return getJSON("/api/v1/events?after=" + from).then(function (data) {
        (data.events || []).forEach(function (e) {
          if (!self.seen.has(e.id)) {
            self.apply(e);
          }
        });
        if ((data.events || []).length >= 500) return page(data.latest);
      });
    }
    this.catching = page(after).catch(function (err) {
      console.warn("catch-up failed; will retry on the next event or reconnect", err);
    }).then(function () {
      self.catching = null;
      if (self.catchAgain) { self.catchAgain = false; return self.catchUp(); }
      window.inboxLive.catching = false;
    });
    return this.catching;
  };

  // --- opt-in browser notification: a conversation newly assigned to me ------
  var notifyKey = "myhibachi.notify";
  var assignees = {}; // conversation id -> assignee id as last seen
  var notified = new Set();

  function notificationsOn() {
    return localStorage.getItem(notifyKey) === "1" && "Notification" in window && Notification.permission === "granted";
  }

  function setupNotifyToggle() {
    var button = qs("#notify-toggle");
    if (!button) return;
    if (!("Notification" in window)) { button.hidden = true; return; }
    var status = qs("#notify-status");
    function show() {
      var on = notificationsOn();
      var refused = Notification.permission === "denied";
      button.setAttribute("aria-pressed", on ? "true" : "false");
      button.textContent = on ? "Notifications on" : refused ? "Notifications blocked" : "Notify me";
      if (status) {
        status.textContent = refused ? "Your browser refused notifications for this site; allow them in its " +
          "site settings, then press again." : "";
      }
    }
    button.addEventListener("click", function () {
      if (notificationsOn()) { localStorage.removeItem(notifyKey); show(); return; }
      Notification.requestPermission().then(function (p) {
        if (p === "granted") localStorage.setItem(notifyKey, "1");
        else if (status && p === "default") status.textContent = "No notifications: the browser's question was dismissed.";
        if (p !== "default") show();
      });
    });
    show();
  }

  function watchAssignment(event) {
    var d = event.data || {};
    if (!/^conversation\./.test(event.type) || d.assignee === undefined) return;
    var before = assignees[event.conversation];
    assignees[event.conversation] = d.assignee;
    if (d.assignee !== ME || before === ME || d.by === MY_NAME || !toastWorthy(event)) return;
    var key = event.conversation + ":" + event.id;
    if (notified.has(event.conversation + ":me")) return;
    notified.add(event.conversation + ":me");
    toast((d.by_name || "Someone") + " assigned conversation #" + event.conversation + " to you.",
          "/inbox/" + event.conversation + "/", "Open conversation #" + event.conversation);
    if (notificationsOn()) {
      var n = new Notification("Assigned to you", { body: "Conversation #" + event.conversation, tag: key });
      n.onclick = function () { window.focus(); location.href = "/inbox/" + event.conversation + "/"; };
    }
  }

  function onMention(event) {
    var d = event.data || {};
    if (!toastWorthy(event)) return;
    toast((d.by_name || d.by || "Someone") + " mentioned you in a note on " + (d.customer || "a conversation") + ".",
          "/inbox/" + event.conversation + "/#n-" + d.note, "Open the note");
  }

  // --- the inbox list -------------------------------------------------------
  function inboxPage() {
    var dirty = new Set();
    var countsDirty = false;

    function current() { return qs("#inbox-body"); }

    function setCounts(counts) {
      Object.keys(counts).forEach(function (key) {
        qsa('[data-count="' + key + '"]').forEach(function (el) { el.textContent = countLabel(counts[key], el); });
      });
      headingTitle();
    }

    function rememberOrder() {
      var ids = qsa("#rows > li.row").map(function (li) { return li.dataset.id; });
      sessionStorage.setItem("myhibachi.order", JSON.stringify(ids));
      qsa("#rows > li.row").forEach(function (li) {
        assignees[li.dataset.id] = li.dataset.assignee ? Number(li.dataset.assignee) : null;
      });
      var empty = qs("#rows-empty");
      if (empty) empty.hidden = ids.length > 0;
    }

    function placeRow(list, row) {
      // Newest activity first, the same order the server pages in.
      var at = row.dataset.activity, rows = qsa(":scope > li.row", list), more = qs("#more-rows", list);
      for (var i = 0; i < rows.length; i++) {
        if (rows[i].dataset.activity < at || (rows[i].dataset.activity === at && Number(rows[i].dataset.id) < Number(row.dataset.id))) {
          list.insertBefore(row, rows[i]);
          return true;
        }
      }
      if (more) return false; // older than everything loaded: it will come with a later page
      list.appendChild(row);
      return true;
    }

    var refresh = debounce(function () {
      var ids = Array.from(dirty).slice(0, 100);
      ids.forEach(function (id) { dirty.delete(id); });
      var wantCounts = countsDirty;
      countsDirty = false;
      var box = current();
      if (!box || (!ids.length && !wantCounts)) return;
      var searching = box.dataset.search === "1";
      if (searching) ids = ids.filter(function (id) { return qs("#conv-" + id); });
      var url = "/inbox/rows?" + box.dataset.query + "&ids=" + ids.join(",");
      getHTML(url).then(function (res) {
        // The tab, a filter or the search changed while this was on its way: its rows were
        // chosen by the old filters, so ask again with the new ones instead of mixing them in.
        if (current() !== box) { ids.forEach(function (id) { dirty.add(id); }); refresh(); return; }
        var counts = res.headers.get("X-Inbox-Counts");
        if (counts) setCounts(JSON.parse(counts));
        var frag = fragment(res.text), list = qs("#rows");
        if (!list) return;
        var fresh = {};
        qsa("li.row", frag).forEach(function (row) { fresh[row.dataset.id] = row; });
        ids.forEach(function (id) {
          var old = qs("#conv-" + id), row = fresh[id];
          var hadFocus = old && old.contains(document.activeElement);
          var selected = old && old.classList.contains("selected");
          if (old) old.remove();
          if (row && placeRow(list, row)) {
            if (selected) row.classList.add("selected");
            processHtmx(row);
            if (hadFocus) { var link = qs(".row-link", row); if (link) link.focus(); }
          }
        });
        rememberOrder();
        tickTimes();
        window.inboxLive.refreshes += 1;
      }).catch(function (err) { console.warn(err); ids.forEach(function (id) { dirty.add(id); }); });
    }, 120);

    function handle(event) {
      watchAssignment(event);
      if (event.type === "mention") { onMention(event); return; }
      if (event.type === "note.created") return; // notes do not change a row
      if (event.conversation) dirty.add(String(event.conversation));
      countsDirty = true;
      refresh();
    }

    // Keep the hidden status of the filter form in step with the tab shown.
    document.addEventListener("htmx:afterSwap", function (e) {
      var box = current();
      if (box && (e.target === box || e.target.id === "inbox-body" || e.target.id === "more-rows" || box.contains(e.target))) {
        var status = qs("#filter-status");
        if (status) status.value = box.dataset.status;
      }
      rememberOrder();
      tickTimes();
      headingTitle();
    });
    searchCoversAllStatuses();

    // j / k / Enter / r / e on the selected row.
    function rows() { return qsa("#rows > li.row"); }
    function selectedIndex() { return rows().findIndex(function (r) { return r.classList.contains("selected"); }); }
    function select(index) {
      var all = rows();
      if (!all.length) return;
      index = Math.max(0, Math.min(all.length - 1, index));
      all.forEach(function (r) { r.classList.remove("selected"); });
      all[index].classList.add("selected");
      var link = qs(".row-link", all[index]);
      link.focus();
      all[index].scrollIntoView({ block: "nearest" });
    }
    function selectedRow() {
      var i = selectedIndex();
      if (i < 0 && document.activeElement) {
        var li = document.activeElement.closest && document.activeElement.closest("#rows > li.row");
        if (li) return li;
      }
      return i >= 0 ? rows()[i] : null;
    }

    rememberOrder();
    return {
      handle: handle,
      keys: {
        j: function () { select(selectedIndex() + 1); },
        k: function () { select(selectedIndex() < 0 ? 0 : selectedIndex() - 1); },
        Enter: function () { var r = selectedRow(); if (r) location.href = qs(".row-link", r).href; },
        r: function () { var r = selectedRow(); if (r) location.href = qs(".row-link", r).href + "#reply"; },
        n: function () { var r = selectedRow(); if (r) location.href = qs(".row-link", r).href + "#note"; },
        e: function () {
          var r = selectedRow(), form = r && qs(".resolve-form", r);
          if (form) form.requestSubmit();
        },
      },
    };
  }

  // --- the list shows what it says: counts, search, @mentions ------------------
  // A filtered count stops at a cap (data-cap): "1000+" past it.
  function countLabel(n, el) {
    var cap = Number(el && el.dataset.cap) || Infinity;
    return n > cap ? cap + "+" : String(n);
  }

  // The page title follows the heading, which follows the tab, the filters and the search.
  function headingTitle() {
    var h = qs("#inbox-heading");
    if (h) document.title = h.textContent.trim() + " · myhibachi";
  }

  // Starting a search looks in every status: the tabs then count the hits per status.
  function searchCoversAllStatuses() {
    var q = qs("#q"), status = qs("#filter-status");
    if (!q || !status) return;
    var before = q.value.trim();
    q.addEventListener("input", function () {
      var now = q.value.trim();
      if (now && !before) status.value = "all";
      before = now;
    });
  }

  // --- one thread: static/js/thread.js (thread pages only), given the helpers it shares ----
  var thread = window.myhibachiThread ? window.myhibachiThread({
    qs: qs, qsa: qsa, debounce: debounce, fragment: fragment, getHTML: getHTML, getJSON: getJSON,
    processHtmx: processHtmx, toast: toast, watchAssignment: watchAssignment, onMention: onMention,
  }) : null;

  // --- after Resolve: a confirmation with Undo, then on to the next conversation ----
  // The thread's Resolve (button or `e`) and a row's Resolve both post a status form.
  // The pending undo lives in sessionStorage so it survives the move to the next
  // conversation (settings.INBOX_NEXT_AFTER_RESOLVE, body data-next-after-resolve).
  var UNDO_KEY = "myhibachi.undo", UNDO_MS = 6000;

  function csrfToken() {
    try { return JSON.parse(body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || ""; } catch (err) { return ""; }
  }

  function previousStatus(form) {
    var header = form.closest("#conv-header");
    if (header) return header.dataset.status;
    var row = form.closest("li.row"), badge = row && qs(".status", row);
    var m = badge && /status-(\w+)/.exec(badge.className);
    return m ? m[1] : "open";
  }

  function showUndo(pending) {
    var old = qs("#undo-bar");
    if (old) old.remove();
    var left = pending.until - Date.now();
    if (left <= 0) { sessionStorage.removeItem(UNDO_KEY); return; }
    var bar = document.createElement("div");
    bar.id = "undo-bar";
    bar.className = "undo-bar";
    bar.setAttribute("role", "status");
    var text = document.createElement("span");
    text.textContent = "Resolved " + (pending.name || "conversation #" + pending.conversation) + ".";
    var undo = document.createElement("button");
    undo.type = "button";
    undo.id = "undo-resolve";
    undo.textContent = "Undo";
    bar.appendChild(text);
    bar.appendChild(undo);
    document.body.appendChild(bar);
    var timer = setTimeout(function () { bar.remove(); sessionStorage.removeItem(UNDO_KEY); }, left);
    undo.addEventListener("click", function () {
      clearTimeout(timer);
      undo.disabled = true;
      sessionStorage.removeItem(UNDO_KEY);
      var form = new FormData();
      form.append("status", pending.previous || "open");
      fetch("/inbox/" + pending.conversation + "/status", {
        method: "POST", body: form, credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), "HX-Request": "true" },
      }).then(function (r) {
        text.textContent = r.ok ? "Undone: conversation #" + pending.conversation + " is " + (pending.previous || "open") + " again."
                                : "Could not undo; open the conversation to change its status.";
        undo.remove();
        if (r.ok && PAGE === "thread" && Number(body.dataset.conversation) === pending.conversation) {
          document.body.dispatchEvent(new CustomEvent("inbox:thread-changed"));
        }
        setTimeout(function () { bar.remove(); }, 3000);
      });
    });
  }

  function nextConversation(conversation) {
    var order = [];
    try { order = JSON.parse(sessionStorage.getItem("myhibachi.order") || "[]"); } catch (err) { order = []; }
    var at = order.indexOf(String(conversation));
    return at >= 0 ? order[at + 1] || null : null;
  }

  // Watch the request itself: the live refresh (our own change's event) may replace the
  // header before the answer arrives, and htmx's events on a detached form reach nobody.
  document.addEventListener("htmx:beforeRequest", function (e) {
    var form = e.detail.elt, xhr = e.detail.xhr;
    var field = form && form.querySelector && form.querySelector('input[name="status"]');
    if (!field || field.value !== "resolved" || !xhr) return;
    var match = /\/inbox\/(\d+)\/status/.exec(form.getAttribute("hx-post") || "");
    if (!match) return;
    var conversation = Number(match[1]);
    var row = form.closest("li.row"), nameEl = row ? qs(".name", row) : qs("#profile-title");
    var pending = { conversation: conversation, previous: previousStatus(form),
                    name: nameEl ? nameEl.textContent.trim() : "" };
    xhr.addEventListener("load", function () {
      if (xhr.status < 200 || xhr.status >= 300) return;
      pending.until = Date.now() + UNDO_MS;
      sessionStorage.setItem(UNDO_KEY, JSON.stringify(pending));
      var next = PAGE === "thread" && body.dataset.nextAfterResolve === "1" ? nextConversation(conversation) : null;
      if (next) location.href = "/inbox/" + next + "/"; else showUndo(pending);
    });
  });

  function resumeUndo() {
    var pending = null;
    try { pending = JSON.parse(sessionStorage.getItem(UNDO_KEY) || "null"); } catch (err) { pending = null; }
    if (pending && pending.conversation) showUndo(pending);
  }

  // --- global keys -------------------------------------------------------------
  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  function setupKeys(page) {
    document.addEventListener("keydown", function (e) {
      if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
      if (typing(e.target)) return;
      var dialog = qs("#shortcuts");
      if (dialog && dialog.open) return;
      if (e.key === "?") { e.preventDefault(); openDialog(dialog, document.activeElement); return; }
      if (e.key === "/") {
        var q = qs("#q");
        if (q) { e.preventDefault(); q.focus(); q.select(); }
        return;
      }
      if (e.key === "Enter" && e.target.closest && e.target.closest("a, button")) return; // native activation
      var action = page && page.keys[e.key];
      if (action) { e.preventDefault(); action(); }
    });
    var open = qs("#shortcuts-open");
    if (open) open.addEventListener("click", function () { openDialog(qs("#shortcuts"), open); });
  }

  // A dialog gives focus back, when it closes (Escape or its button), to what
  // opened it. A live update may have swapped the opener's list row for a fresh
  // copy meanwhile: then focus goes to the same conversation's new row, and to
  // the shortcuts button only when that conversation has left the list.
  function openDialog(dialog, opener) {
    if (!dialog) return;
    var back = opener && opener !== document.body ? opener : qs("#shortcuts-open");
    var row = back && back.closest ? back.closest("li.row[id]") : null, rowId = row ? row.id : null;
    dialog.addEventListener("close", function () {
      var target = back && document.contains(back) ? back : null;
      if (!target && rowId) target = qs("#" + rowId + " .row-link");
      if (!target) target = qs("#shortcuts-open");
      if (target) target.focus();
    }, { once: true });
    dialog.showModal();
  }

  // --- phone width: the status tabs scroll sideways; a fade marks the side with more
  function tabCue(tabs) {
    var more = [];
    if (tabs.scrollLeft > 2) more.push("left");
    if (tabs.scrollLeft + tabs.clientWidth < tabs.scrollWidth - 2) more.push("right");
    tabs.dataset.more = more.join(" ") || "none";
  }

  function setupTabCues() {
    function all() { document.querySelectorAll(".tabs").forEach(tabCue); }
    document.addEventListener("scroll", function (e) {
      if (e.target.classList && e.target.classList.contains("tabs")) tabCue(e.target);
    }, true);
    window.addEventListener("resize", all);
    document.body.addEventListener("htmx:afterSettle", all);
    all();
  }

  // --- start -------------------------------------------------------------------
  window.inboxLive = { applied: 0, catchUps: 0, refreshes: 0, catching: false };
  var page = PAGE === "inbox" ? inboxPage() : PAGE === "thread" && thread ? thread.threadPage() : null;
  setupKeys(page);
  setupNotifyToggle();
  setupTabCues();
  resumeUndo();
  if (thread) thread.emailFields();
  if (PAGE === "thread" && thread) thread.openAtNewest();
  tickTimes();
  setInterval(tickTimes, 30000);
  if (page) {
    var live = new Live(Number(body.dataset.latestEvent) || 0, page.handle);
    window.inboxLive.client = live;
    live.connect();
  }
})();
