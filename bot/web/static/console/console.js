/* hybridesk console: live Markdown preview, live conversation updates, confirmations and notices
   (no dependencies; the CSP allows no inline script, so every behaviour is bound here). */
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";

  function post(url, body, json) {
    var headers = { "X-CSRF-Token": csrf, "Accept": "application/json" };
    if (json) { headers["Content-Type"] = "application/json"; }
    return fetch(url, { method: "POST", credentials: "same-origin", headers: headers,
                        body: json ? JSON.stringify(body) : body });
  }

  /* "Go back" on an error page: back to the page that sent the form (its fields keep what was
     typed); the link's own target, the console home, stays for a page opened directly. */
  document.addEventListener("click", function (ev) {
    var link = ev.target && ev.target.closest ? ev.target.closest("a[data-back]") : null;
    if (link && window.history.length > 1) {
      ev.preventDefault();
      window.history.back();
    }
  });

  /* Confirmation before an action that is hard to undo: any form with data-confirm="Question?" asks
     first (Enter in one of its fields included); without JS the form simply submits. Registered before
     the data-submit-once handler below, which leaves a cancelled submission alone. */
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form || !form.hasAttribute || !form.hasAttribute("data-confirm") || ev.defaultPrevented) { return; }
    if (!window.confirm(form.getAttribute("data-confirm"))) { ev.preventDefault(); }
  });

  /* A form sent once: with data-submit-once, a second Enter or a double click while the first
     submission is on its way does nothing, and the buttons are disabled (after the form data is
     taken, so the clicked button's name and value still go with it). */
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form || !form.hasAttribute || !form.hasAttribute("data-submit-once") || ev.defaultPrevented) { return; }
    if (form.dataset.sending === "1") { ev.preventDefault(); return; }
    form.dataset.sending = "1";
    form.setAttribute("aria-busy", "true");
    setTimeout(function () {
      Array.prototype.forEach.call(form.querySelectorAll("button, input[type=submit]"), function (b) { b.disabled = true; });
    }, 0);
  });
  window.addEventListener("pageshow", function () {  // back to a page kept in the cache: usable again
    Array.prototype.forEach.call(document.querySelectorAll("form[data-submit-once]"), function (form) {
      delete form.dataset.sending;
      form.removeAttribute("aria-busy");
      Array.prototype.forEach.call(form.querySelectorAll("button, input[type=submit]"), function (b) { b.disabled = false; });
    });
  });

  /* What the last action did (#done-notice, from "?done=code"): focus goes where the work continues
     (the reply box after a takeover, the corrected reply, the user's row) and the notice is said
     again there; otherwise to the notice itself. A form sent back with an error: its first wrong field. */
  var focusable = function (el) {
    if (!el.matches("a[href], button, input, select, textarea, [tabindex]")) { el.setAttribute("tabindex", "-1"); }
    el.focus();
  };
  var notice = document.getElementById("done-notice");
  var invalid = document.querySelector("[data-invalid]");
  if (invalid) {
    invalid.focus();
  } else if (notice && !notice.hidden && notice.textContent.trim()) {
    var params = new URLSearchParams(window.location.search);
    var code = params.get("done");
    if (code && window.history.replaceState) {  // a reload or a bookmark does not say it again
      params.delete("done");
      var query = params.toString();
      window.history.replaceState(window.history.state, "",
                                  window.location.pathname + (query ? "?" + query : "") + window.location.hash);
    }
    var target = code === "taken_over" ? document.getElementById("agent-text") : null;
    if (!target && window.location.hash.length > 1) {
      try { target = document.getElementById(decodeURIComponent(window.location.hash.slice(1))); } catch (e) { target = null; }
    }
    if (target) {
      focusable(target);
      var said = notice.textContent;
      notice.textContent = "";  // it was there before the page loaded: a live region says it when it changes
      setTimeout(function () { notice.textContent = said; }, 250);
    } else {
      notice.focus();
    }
  }

  /* Markdown preview: rendered by the server (HTML escaped, same renderer as the public page). */
  var source = document.getElementById("md-source");
  var preview = document.getElementById("md-preview");
  if (source && preview) {
    var title = document.getElementById("doc-title");
    var timer = null;
    var refresh = function () {
      post("/console/kb/preview", { text: source.value, title: title ? title.value : "" }, true)
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) { preview.innerHTML = data.html; } });
    };
    var later = function () { clearTimeout(timer); timer = setTimeout(refresh, 300); };
    source.addEventListener("input", later);
    if (title) { title.addEventListener("input", later); }
    refresh();
  }

  /* KB "test a question": fetch each side's bot reply, one after the other (the model is slow on
     a small CPU; two at once would only compete for it). */
  var pending = Array.prototype.slice.call(document.querySelectorAll(".bot-reply[data-url]"));
  var next = function () {
    var box = pending.shift();
    if (!box) { return; }
    var text = box.querySelector(".reply-text");
    var meta = box.querySelector(".reply-meta");
    var note = box.querySelector(".reply-note");
    text.textContent = "Writing the reply…";
    fetch(box.dataset.url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json().then(function (data) { return { ok: r.ok, data: data }; }); })
      .then(function (res) {
        var d = res.data;
        if (!res.ok) { throw new Error(d.error ? d.error.message : "The test failed."); }
        text.className = "reply-text";
        text.textContent = d.text || "(no reply)";
        meta.textContent = "guardrail: " + d.verdict + " · intent " + d.intent + " · tone " + d.tone +
          (d.adapter_id ? " · adapter " + d.adapter_id : "") +
          (d.generation_ms ? " · " + Math.round(d.generation_ms) + " ms" : "");
        note.textContent = d.note || "";
      })
      .catch(function (err) { text.textContent = String(err.message || err); })
      .then(function () { box.setAttribute("aria-busy", "false"); })  // its live region may now speak
      .then(next);
  };
  next();

  /* Transcripts: the customers waiting for a person, refreshed every 10 s (longest waiting first).
     Updated in place, keyed by conversation: nothing changes in the page when nothing changed, the
     link that has the focus keeps it, and a change is summed up in the small #waiting-status region
     ("1 new customer waiting, 3 in total") instead of the whole queue being read again. */
  var waitingList = document.getElementById("waiting-list");
  if (waitingList) {
    var waitingStatus = document.getElementById("waiting-status");
    var setText = function (el, text) { if (el && el.textContent !== text) { el.textContent = text; } };
    var sinceText = function (w) {
      var at = function (iso) { return iso.replace("T", " ").slice(0, 16) + " UTC"; };
      return " waiting since " + at(w.since) + (w.reason ? " · " + w.reason : "") +
        (w.stale && w.last_active ? " · silent since " + at(w.last_active) + ", may have left" : "");
    };
    var waitingItem = function (w) {
      var li = document.createElement("li");
      li.dataset.id = w.conversation_id;
      var a = document.createElement("a");
      a.href = "/console/conversations/" + encodeURIComponent(w.conversation_id);
      a.dir = "auto";  // the customer's words, isolated from the line around them
      var when = document.createElement("span");
      when.className = "muted small";
      li.appendChild(a);
      li.appendChild(when);
      return li;
    };
    var plural = function (n, one, many) { return n + " " + (n === 1 ? one : many); };
    var refreshWaiting = function () {
      return fetch("/console/waiting.json", { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data) { return; }
          var wanted = {};
          data.waiting.forEach(function (w) { wanted[w.conversation_id] = true; });
          var shown = {};
          var active = document.activeElement;
          var refocus = null;
          var added = 0;
          var gone = 0;
          Array.prototype.slice.call(waitingList.children).forEach(function (li) {
            if (wanted[li.dataset.id]) { shown[li.dataset.id] = li; return; }
            if (li.contains(active)) {  // the focused customer was taken: focus the next one (or the heading)
              var near = li.nextElementSibling || li.previousElementSibling;
              while (near && !wanted[near.dataset.id]) { near = near.nextElementSibling; }
              refocus = near ? near.querySelector("a") : document.getElementById("waiting-heading");
            }
            waitingList.removeChild(li);
            gone += 1;
          });
          var at = waitingList.firstElementChild;
          data.waiting.forEach(function (w) {
            var li = shown[w.conversation_id];
            if (!li) { li = waitingItem(w); added += 1; }
            setText(li.firstElementChild, w.last_customer_message || "(no message)");
            setText(li.lastElementChild, sinceText(w));
            if (li === at) { at = li.nextElementSibling; return; }
            var hadFocus = li.contains(document.activeElement) ? document.activeElement : null;
            waitingList.insertBefore(li, at);  // (only when the order changed)
            if (hadFocus) { hadFocus.focus(); }
          });
          setText(document.getElementById("waiting-count"), String(data.count));
          var none = document.getElementById("waiting-none");
          if (none && none.hidden !== data.count > 0) { none.hidden = data.count > 0; }
          if (refocus) { focusable(refocus); }
          if (added || gone) {
            var parts = [];
            if (added) { parts.push(plural(added, "new customer waiting", "new customers waiting")); }
            if (gone) { parts.push(plural(gone, "customer", "customers") + " no longer waiting"); }
            setText(waitingStatus, parts.join(", ") + ", " + data.count + " in total");
          }
        })
        .catch(function () { /* offline for a moment */ });
    };
    setInterval(refreshWaiting, 10000);
  }

  /* the conversation modes as agents read them (as the console's mode_label filter writes them) */
  var MODE_LABELS = { bot: "bot answers", human: "agent holds it", handoff_requested: "waiting for a person" };

  /* Conversation: poll for new messages and mode changes (works across server processes). */
  var list = document.getElementById("messages");
  if (list && list.dataset.conversation) {
    var conv = list.dataset.conversation;
    var last = parseInt(list.dataset.lastSeq || "0", 10);
    var modeBadge = document.getElementById("conv-mode");
    var render = function (m) {
      var li = document.createElement("li");
      li.className = "msg role-" + m.role + " fresh";
      if (m.id) { li.id = "msg-" + m.id; }
      var head = document.createElement("h3");
      head.className = "meta";
      var who = document.createElement("strong");
      who.textContent = m.author ? m.role + " · " + m.author : m.role;  // which agent wrote it
      var when = document.createElement("span");
      when.className = "muted";
      when.textContent = " #" + m.seq + (m.created_at ? " · " + m.created_at.replace("T", " ").slice(0, 16) + " UTC" : "") +
        (m.intent ? " · " + m.intent : "") + (m.tone ? " · " + m.tone : "");
      head.appendChild(who);
      head.appendChild(when);
      var text = document.createElement("div");
      text.className = "text";
      text.dir = "auto";
      text.textContent = m.text;
      li.appendChild(head);
      li.appendChild(text);
      list.appendChild(li);
    };
    var poll = function () {
      return fetch("/console/conversations/" + encodeURIComponent(conv) + "/messages.json?after=" + last,
                   { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data) { return; }
          data.messages.forEach(function (m) { if (m.seq > last) { render(m); last = m.seq; } });
          if (modeBadge && modeBadge.dataset.mode !== data.mode) {
            modeBadge.dataset.mode = data.mode;
            modeBadge.textContent = MODE_LABELS[data.mode] || data.mode;
            modeBadge.className = "badge mode-" + data.mode;
          }
          // who holds it, or whether it is still open, changed: the buttons and the reply box are stale
          var held = data.held_by_user_id === null ? "" : String(data.held_by_user_id);
          var what = [];
          if (held !== (list.dataset.heldBy || "")) { what.push(held ? "an agent holds it now" : "it was handed back"); }
          if (data.status && data.status !== list.dataset.status) { what.push("it is " + data.status + " now"); }
          var changed = document.getElementById("conv-changed");
          if (changed && what.length) {
            document.getElementById("conv-changed-what").textContent = what.join("; ");
            changed.hidden = false;
          }
        })
        .catch(function () { /* offline for a moment: the next poll catches up */ });
    };
    setInterval(poll, 2000);

    var form = document.getElementById("agent-form");
    if (form) {
      var box = form.querySelector("textarea");
      var problem = document.getElementById("agent-form-error");
      var sent = document.getElementById("agent-form-status");
      var count = document.getElementById("agent-text-count");
      var say = function (text) { problem.textContent = text; problem.hidden = !text; };
      var confirmSent = function (text) { if (sent) { sent.textContent = text; } };
      var limit = count ? parseInt(count.dataset.max || "0", 10) : 0;
      var counted = function () {  // the limit is said, not applied silently (a long paste is cut at it)
        if (!count || !limit) { return; }
        var n = box.value.length;
        count.textContent = n.toLocaleString("en") + " of " + limit.toLocaleString("en") + " characters";
        count.classList.toggle("over", n >= limit);
        if (n >= limit) { say("This reaches the limit of " + limit.toLocaleString("en") + " characters: anything longer is cut off."); }
      };
      box.addEventListener("input", function () { say(""); confirmSent(""); counted(); });
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        if (!box.value.trim()) { say("Write a message to send."); box.focus(); return; }
        say("");
        var data = new URLSearchParams();
        data.set("text", box.value);
        data.set("csrf_token", csrf);
        // one id per message: a retry or a double click is stored once
        if (!form.dataset.pendingId || form.dataset.pendingText !== box.value) {
          form.dataset.pendingId = "agent-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
          form.dataset.pendingText = box.value;
        }
        data.set("client_message_id", form.dataset.pendingId);
        post(form.getAttribute("action"), data, false).then(function (r) {
          if (r.ok) {
            box.value = "";
            delete form.dataset.pendingId;
            counted();
            confirmSent("Message sent.");  // (the message itself appears in the log below)
            poll();
            return null;
          }
          return r.json().then(function (e) { say(e.error ? e.error.message : "Could not send."); });
        }).catch(function () { say("Could not send; check the connection and try again."); });
      });
    }
  }
})();
