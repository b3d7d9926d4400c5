/* hybridesk console: live Markdown preview and live conversation updates (no dependencies). */
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
      .then(next);
  };
  next();

  /* Transcripts: the customers waiting for a person, refreshed every 10 s (longest waiting first). */
  var waitingList = document.getElementById("waiting-list");
  if (waitingList) {
    var refreshWaiting = function () {
      fetch("/console/waiting.json", { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data) { return; }
          document.getElementById("waiting-count").textContent = String(data.count);
          document.getElementById("waiting-none").hidden = data.count > 0;
          while (waitingList.firstChild) { waitingList.removeChild(waitingList.firstChild); }
          data.waiting.forEach(function (w) {
            var li = document.createElement("li");
            var a = document.createElement("a");
            a.href = "/console/conversations/" + encodeURIComponent(w.conversation_id);
            a.textContent = w.last_customer_message || "(no message)";
            var when = document.createElement("span");
            when.className = "muted small";
            when.textContent = " waiting since " + w.since.replace("T", " ").slice(0, 16) + " UTC" +
              (w.reason ? " · " + w.reason : "");
            li.appendChild(a);
            li.appendChild(when);
            waitingList.appendChild(li);
          });
        })
        .catch(function () { /* offline for a moment */ });
    };
    setInterval(refreshWaiting, 10000);
  }

  /* Conversation: poll for new messages and mode changes (works across server processes). */
  var list = document.getElementById("messages");
  if (list && list.dataset.conversation) {
    var conv = list.dataset.conversation;
    var last = parseInt(list.dataset.lastSeq || "0", 10);
    var modeBadge = document.getElementById("conv-mode");
    var render = function (m) {
      var li = document.createElement("li");
      li.className = "msg role-" + m.role + " fresh";
      var head = document.createElement("div");
      head.className = "meta";
      var who = document.createElement("strong");
      who.textContent = m.author ? m.role + " · " + m.author : m.role;  // which agent wrote it
      var when = document.createElement("span");
      when.className = "muted";
      when.textContent = " #" + m.seq + (m.intent ? " · " + m.intent : "") + (m.tone ? " · " + m.tone : "");
      head.appendChild(who);
      head.appendChild(when);
      var text = document.createElement("div");
      text.className = "text";
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
          if (modeBadge && modeBadge.textContent !== data.mode) {
            modeBadge.textContent = data.mode;
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
      var say = function (text) { problem.textContent = text; problem.hidden = !text; };
      box.addEventListener("input", function () { say(""); });
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
          if (r.ok) { box.value = ""; delete form.dataset.pendingId; poll(); return null; }
          return r.json().then(function (e) { say(e.error ? e.error.message : "Could not send."); });
        }).catch(function () { say("Could not send; check the connection and try again."); });
      });
    }
  }
})();
