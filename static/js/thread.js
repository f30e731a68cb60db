/* The thread screen's part of the staff screens, loaded on thread pages only (before inbox.js):
 * the live thread, the reply box (modes, canned responses, @mentions, Cc and attachments while
 * an email channel is chosen), "Show images" in customer email, and opening at the newest item.
 * inbox.js calls window.myhibachiThread with the helpers both share; the inbox list, which has
 * none of this, does not download it (the page-weight budget in bench/bench_screens.py).
 */
window.myhibachiThread = function (shared) {
  "use strict";

  var body = document.body;
  var qs = shared.qs, qsa = shared.qsa, debounce = shared.debounce, fragment = shared.fragment;
  var getHTML = shared.getHTML, getJSON = shared.getJSON, processHtmx = shared.processHtmx, toast = shared.toast;
  var watchAssignment = shared.watchAssignment, onMention = shared.onMention;

  // --- remote images in customer email: only on "Show images" ------------------
  // The server writes no src for them, only data-proxied-src: our own image
  // proxy (the page's CSP allows images from this origin and data: only).
  function showImages(item) {
    qsa("img[data-proxied-src]", item).forEach(function (img) {
      var src = img.getAttribute("data-proxied-src");
      if (src.indexOf("/inbox/image?") === 0) img.setAttribute("src", src);
      img.removeAttribute("data-proxied-src");
    });
    item.dataset.images = "shown";
    var note = qs(".images-blocked", item);
    if (note) note.remove();
  }

  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("button.show-images");
    var item = button && button.closest("li.item");
    if (item) showImages(item);
  });

  // --- one thread ------------------------------------------------------------
  function threadPage() {
    var conversation = Number(body.dataset.conversation);
    var known = new Set((body.dataset.conversations || "").split(",").filter(Boolean).map(Number));

    var refresh = debounce(function () {
      getHTML("/inbox/" + conversation + "/live").then(function (res) {
        var frag = fragment(res.text), payload = qs("#live-payload", frag);
        if (!payload) return;
        (payload.dataset.conversations || "").split(",").filter(Boolean).forEach(function (id) { known.add(Number(id)); });
        var header = qs("#conv-header", frag), old = qs("#conv-header");
        if (header && old) {
          var focusedId = old.contains(document.activeElement) ? document.activeElement.id : null;
          var error = qs("#header-error", old);
          if (error) header.appendChild(error); // keep a message the person has not read yet
          var history = qs("#conv-history", old), historyOpen = history && history.open;
          old.replaceWith(header);
          processHtmx(header);
          // An open History stays open, and reloads (the change that caused this refresh may be in it).
          if (historyOpen && qs("#conv-history", header)) qs("#conv-history", header).open = true;
          if (focusedId && document.getElementById(focusedId)) document.getElementById(focusedId).focus();
        }
        var list = qs("#thread-items"), added = 0;
        qsa("#live-items > li.item", frag).forEach(function (item) {
          var existing = document.getElementById(item.id);
          if (existing) {
            var shown = existing.dataset.images === "shown";
            existing.replaceWith(item);
            if (shown) showImages(item); // a refreshed item keeps the images someone asked for
          } else {
            var empty = qs(":scope > li.empty", list);
            if (empty) empty.remove();
            var after = qsa(":scope > li.item", list).filter(function (li) { return li.dataset.at > item.dataset.at; });
            if (after.length) list.insertBefore(item, after[0]); else list.appendChild(item);
            added += 1;
          }
        });
        if (added) {
          var last = qs(":scope > li.item:last-child", list);
          if (last) last.scrollIntoView({ block: "nearest" });
        }
        window.inboxLive.refreshes += 1;
      }).catch(function (err) { console.warn(err); });
    }, 100);

    function handle(event) {
      watchAssignment(event);
      if (event.type === "mention") { onMention(event); return; }
      if (known.has(event.conversation) || event.type === "conversation.created") refresh();
    }

    document.body.addEventListener("inbox:thread-changed", refresh);

    function neighbour(step) {
      var order = [];
      try { order = JSON.parse(sessionStorage.getItem("myhibachi.order") || "[]"); } catch (err) { order = []; }
      var at = order.indexOf(String(conversation));
      var next = at >= 0 ? order[at + step] : null;
      if (next) location.href = "/inbox/" + next + "/";
    }

    if (location.hash === "#reply") composerMode("reply", true);
    if (location.hash === "#note") composerMode("note", true);

    return {
      handle: handle,
      keys: {
        j: function () { neighbour(1); },
        k: function () { neighbour(-1); },
        r: function () { composerMode("reply", true); },
        n: function () { composerMode("note", true); },
        e: function () { var b = qs("#set-resolved"); if (b) b.click(); },
      },
    };
  }

  // "@" in a note suggests staff by name (GET /api/v1/staff?q=); choosing one writes @username.
  var mentionState = { items: [], index: -1, start: -1, asked: 0 };

  function mentionBeforeCaret(textarea) {
    var upto = textarea.value.slice(0, textarea.selectionStart);
    var m = /(^|\s)@([\w.+-]*)$/.exec(upto);
    return m ? { prefix: m[2], start: upto.length - m[2].length - 1 } : null;
  }

  function closeMentions() {
    var list = qs("#mention-suggestions");
    if (list) { list.hidden = true; list.textContent = ""; }
    mentionState.items = []; mentionState.index = -1;
    var t = qs("#reply-text");
    if (t) { t.removeAttribute("aria-activedescendant"); t.setAttribute("aria-expanded", "false"); }
  }

  function showMentions(items) {
    var list = qs("#mention-suggestions"), t = qs("#reply-text");
    if (!list || !t) return;
    list.textContent = "";
    mentionState.items = items; mentionState.index = items.length ? 0 : -1;
    items.forEach(function (person, i) {
      var li = document.createElement("li");
      li.id = "mention-option-" + i;
      li.setAttribute("role", "option");
      li.dataset.username = person.username;
      li.textContent = person.name + " ";
      var small = document.createElement("span");
      small.className = "muted";
      small.textContent = "@" + person.username;
      li.appendChild(small);
      li.addEventListener("mousedown", function (e) { e.preventDefault(); chooseMention(i); });
      list.appendChild(li);
    });
    list.hidden = !items.length;
    t.setAttribute("aria-expanded", items.length ? "true" : "false");
    markMention();
  }

  function markMention() {
    qsa("#mention-suggestions > li").forEach(function (li, i) {
      li.setAttribute("aria-selected", i === mentionState.index ? "true" : "false");
    });
    var t = qs("#reply-text");
    if (t && mentionState.index >= 0) t.setAttribute("aria-activedescendant", "mention-option-" + mentionState.index);
  }

  function chooseMention(i) {
    var t = qs("#reply-text"), person = mentionState.items[i];
    var found = t && mentionBeforeCaret(t);
    if (!person || !found) { closeMentions(); return; }
    var insert = "@" + person.username + " ";
    t.value = t.value.slice(0, found.start) + insert + t.value.slice(t.selectionStart);
    var caret = found.start + insert.length;
    t.setSelectionRange(caret, caret);
    closeMentions();
    t.focus();
  }

  var askMentions = debounce(function () {
    var t = qs("#reply-text"), form = qs("#composer");
    var found = t && form && form.classList.contains("mode-note") ? mentionBeforeCaret(t) : null;
    if (!found) { closeMentions(); return; }
    var asked = ++mentionState.asked;
    getJSON("/api/v1/staff?q=" + encodeURIComponent(found.prefix)).then(function (data) {
      if (asked === mentionState.asked) showMentions(data.results || []);
    }).catch(function () { closeMentions(); });
  }, 150);

  document.addEventListener("input", function (e) {
    if (e.target.id !== "reply-text") return;
    var checked = qs('#composer input[name="mentions_checked"]');
    if (checked) checked.remove(); // the text changed: its mentions are checked again on sending
    askMentions();
  });

  // Runs before the reply box's own keys (capture): Enter or Tab picks the suggestion, not a newline.
  document.addEventListener("keydown", function (e) {
    if (e.target.id !== "reply-text" || !mentionState.items.length) return;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      var n = mentionState.items.length;
      mentionState.index = (mentionState.index + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
      markMention();
    } else if ((e.key === "Enter" && !e.ctrlKey && !e.metaKey) || e.key === "Tab") {
      e.preventDefault();
      e.stopImmediatePropagation();
      chooseMention(mentionState.index);
    } else if (e.key === "Escape") {
      e.preventDefault();
      e.stopImmediatePropagation();
      closeMentions();
    }
  }, true);

  // --- the reply box: modes, canned responses, Ctrl+Enter ---------------------
  function composerMode(mode, focus) {
    var form = qs("#composer");
    if (!form) return;
    var radio = qs('input[name="mode"][value="' + mode + '"]', form);
    if (radio) radio.checked = true;
    form.classList.toggle("mode-note", mode === "note");
    form.classList.toggle("mode-reply", mode === "reply");
    qs("#reply-text-label", form).textContent = mode === "note" ? "Note (staff only)" : "Message to the customer";
    qs("#composer-submit", form).textContent = mode === "note" ? "Add note" : "Send reply";
    if (focus) { var t = qs("#reply-text", form); t.focus(); t.scrollIntoView({ block: "nearest" }); }
  }

  function cannedOptions() {
    return qsa("#canned-picker option[data-shortcut]").map(function (o) {
      return { id: o.value, shortcut: o.dataset.shortcut };
    });
  }

  // typed: the "/shortcut" text being replaced. Typing "/thanks" and then a space
  // asks twice before the first answer arrives; only the answer that still finds
  // the shortcut in place inserts, so the text never lands twice.
  function insertCanned(id, textarea, start, end, typed) {
    var form = qs("#composer");
    var conversation = form.dataset.conversation;
    return getJSON("/api/v1/canned-responses/" + encodeURIComponent(id) + "/render?conversation=" + conversation)
      .then(function (data) {
        var value = textarea.value;
        if (start === undefined) { start = textarea.selectionStart; end = textarea.selectionEnd; }
        if (typed !== undefined && value.slice(start, end) !== typed) return;
        textarea.value = value.slice(0, start) + data.text + value.slice(end);
        var caret = start + data.text.length;
        textarea.setSelectionRange(caret, caret);
        textarea.focus();
        textarea.dispatchEvent(new Event("input", { bubbles: true }));
      })
      .catch(function () { toast("That canned response could not be loaded; try again."); });
  }

  // "/shortcut" right before the caret, at the start or after a space.
  function shortcutBeforeCaret(textarea) {
    var upto = textarea.value.slice(0, textarea.selectionStart);
    var m = /(^|\s)\/([\w-]+)$/.exec(upto);
    if (!m) return null;
    var name = m[2].toLowerCase(), options = cannedOptions();
    var exact = options.filter(function (o) { return o.shortcut.toLowerCase() === name; })[0];
    if (!exact) return null;
    var longer = options.some(function (o) { return o.shortcut.toLowerCase() !== name && o.shortcut.toLowerCase().indexOf(name) === 0; });
    var start = upto.length - name.length - 1;
    return { option: exact, start: start, end: upto.length, typed: upto.slice(start), ambiguous: longer };
  }

  document.addEventListener("change", function (e) {
    if (e.target.id === "canned-picker" && e.target.value) {
      var t = qs("#reply-text");
      insertCanned(e.target.value, t).then(function () { e.target.value = ""; });
    }
    if (e.target.name === "mode" && e.target.closest("#composer")) composerMode(e.target.value, false);
  });

  document.addEventListener("input", function (e) {
    if (e.target.id !== "reply-text") return;
    var count = qs("#char-count");
    if (count) count.textContent = e.target.value.length;
    if (e.inputType && e.inputType.indexOf("insert") === 0) {
      var found = shortcutBeforeCaret(e.target);
      if (found && !found.ambiguous) insertCanned(found.option.id, e.target, found.start, found.end, found.typed);
    }
  });

  document.addEventListener("keydown", function (e) {
    if (e.target.id !== "reply-text") return;
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      e.target.form.requestSubmit();
      return;
    }
    if (e.key === "Tab" || e.key === " ") {
      var found = shortcutBeforeCaret(e.target);
      if (found) {
        e.preventDefault();
        insertCanned(found.option.id, e.target, found.start, found.end, found.typed);
      }
    }
    if (e.key === "Escape") e.target.blur();
  });

  // --- the reply box: Cc and attachments only while an email channel is chosen -------
  function emailFields() {
    var box = qs("#composer .composer-email"), select = qs("#reply-channel");
    if (!box || !select || select.tagName !== "SELECT") return;
    var email = (box.dataset.emailChannels || "").split(",").indexOf(select.value) >= 0;
    box.hidden = !email;
    qsa("input", box).forEach(function (input) { input.disabled = !email; });
  }
  document.addEventListener("change", function (e) { if (e.target.id === "reply-channel") emailFields(); });
  document.addEventListener("htmx:afterSwap", emailFields);

  // --- the thread opens at its newest item, with the reply box in view ------------
  function openAtNewest() {
    if (location.hash && location.hash !== "#thread-end") return; // a link to one item, or #reply/#note
    var composer = qs("#composer");
    if (composer) composer.scrollIntoView({ block: "end" });
  }

  return { threadPage: threadPage, composerMode: composerMode, emailFields: emailFields, openAtNewest: openAtNewest };
};
