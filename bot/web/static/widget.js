/*! hybridesk chat widget — one script tag, no dependencies.
 *
 *   <script src="https://chat.example.com/static/widget.js"
 *           data-server="https://chat.example.com"  (default: where this script came from)
 *           data-title="Help" data-color="#2f5d50" data-greeting="Hi! How can we help?"></script>
 *
 * Everything lives in a Shadow DOM (the host page's CSS cannot reach in, ours cannot leak out).
 * Every text from the customer, the bot or an agent is rendered with textContent, never as HTML.
 * The conversation id and token are kept in localStorage, so the chat survives reloads.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__hybridesk) return; // included twice: keep the first
  window.__hybridesk = true;

  var ds = script.dataset || {};
  var server = (ds.server || new URL(script.src, location.href).origin).replace(/\/+$/, "");
  var TITLE = ds.title || "Help";
  var GREETING = ds.greeting || "";
  var COLOR = ds.color && window.CSS && CSS.supports("color", ds.color) ? ds.color : "#2f5d50";
  var KEY = "hybridesk:" + server;
  var MAX_CHARS = 2000; // the server's limit (HYBRIDESK_MAX_MESSAGE_CHARS), updated by the "ready" event
  var ON_ACCENT = onAccent(COLOR); // black or white text on the accent: whichever contrasts more
  var MODES = {
    bot: "Virtual assistant — answers from our help pages",
    handoff_requested: "Waiting for a person from our team to join…",
    human: "You are chatting with a person from our team"
  };

  var CSS_TEXT = [
    // the host element is in the page's tree: its rules beat normal :host ones (and what is set on the
    // host is inherited inside), so reset it with !important (the shadow root's !important wins) and
    // set every inherited property the widget relies on explicitly
    ":host{all:initial!important;direction:ltr!important;font:400 15px/1.45 system-ui,sans-serif!important;",
    "color:#1d1d1f!important;letter-spacing:normal!important;word-spacing:normal!important;",
    "text-transform:none!important;text-indent:0!important;text-align:start!important}",
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}",
    // placed in the visual viewport (what is on screen), not the layout viewport position:fixed uses: on a
    // phone that one can be wider than the screen (a host page too wide for it), or taller than what a
    // pinch zoom or the on-screen keyboard leaves visible. --hd-x/y/w/h are its box and --hd-r/b its right
    // and bottom edge, set by fit(); the fallbacks (no visualViewport) are the layout viewport's.
    ".launcher{position:fixed;left:calc(var(--hd-r,100%) - 80px);top:calc(var(--hd-b,100%) - 80px);",
    "width:60px;height:60px;border-radius:50%;border:0;",
    "background:var(--hd-accent);color:var(--hd-on-accent);cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);",
    "display:flex;align-items:center;justify-content:center;z-index:2147483000}",
    ".launcher svg{width:28px;height:28px;fill:currentColor}",
    ".launcher .badge{position:absolute;top:2px;right:2px;min-width:18px;height:18px;border-radius:9px;",
    "background:#c0392b;color:#fff;font-size:11px;line-height:18px;text-align:center;padding:0 4px}",
    ":focus-visible{outline:3px solid #1a73e8;outline-offset:2px}",
    ".panel{position:fixed;--hd-pw:min(380px,calc(var(--hd-w,100%) - 24px));--hd-ph:min(560px,calc(var(--hd-h,100%) - 112px));",
    "left:calc(var(--hd-r,100%) - 20px - var(--hd-pw));top:calc(var(--hd-b,100%) - 92px - var(--hd-ph));",
    "width:var(--hd-pw);height:var(--hd-ph);background:#fff;color:#1d1d1f;border-radius:14px;display:flex;",
    "flex-direction:column;box-shadow:0 10px 40px rgba(0,0,0,.28);overflow:hidden;z-index:2147483001;",
    "font-size:15px;line-height:1.45}",
    ".panel[hidden]{display:none}",
    "header{background:var(--hd-accent);color:var(--hd-on-accent);padding:12px 12px 10px 16px;flex-shrink:0}",
    ".top{display:flex;gap:8px;align-items:flex-start}",
    ".actions{display:flex;gap:6px;margin-top:8px}",
    ".actions:empty{display:none}",
    "header .head{flex:1;min-width:0}",
    "h2{margin:0;font-size:17px;font-weight:600}",
    ".status{margin:2px 0 0;font-size:12.5px;opacity:.92}",
    ".panel.human header{background:#3b3f8f;color:#fff}",
    ".panel.handoff_requested header{background:#8a5a00;color:#fff}",
    "header button{background:rgba(255,255,255,.18);color:inherit;border:0;border-radius:8px;padding:6px 9px;",
    "font-size:13px;cursor:pointer;white-space:nowrap}",
    "header button:hover{background:rgba(255,255,255,.3)}",
    "header button[hidden]{display:none}",
    ".log{flex:1;min-height:0;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:10px;background:#f6f7f8}",
    ".msg{max-width:86%;padding:9px 12px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere}",
    ".msg .who{font-size:11.5px;font-weight:600;opacity:.7;margin-bottom:2px}",
    ".customer{align-self:flex-end;background:var(--hd-accent);color:var(--hd-on-accent);border-bottom-right-radius:4px}",
    ".customer .who{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    ".bot,.agent{align-self:flex-start;background:#fff;border:1px solid #e2e4e8;border-bottom-left-radius:4px}",
    ".agent{border-color:#3b3f8f;border-width:1px 1px 1px 4px}",
    ".system{align-self:center;background:none;color:#5f6368;font-size:13px;text-align:center;font-style:italic}",
    ".system .who{display:none}",
    ".failed{border:2px dashed #c0392b}",
    ".unsent{display:flex;align-items:center;gap:8px;margin-top:6px;padding:3px 8px;border-radius:8px;",
    "background:#fff;color:#8a1c12;font-size:12.5px;font-weight:600}",
    ".unsent button{border:1px solid #8a1c12;background:#fff;color:#8a1c12;border-radius:8px;padding:1px 8px;",
    "font-size:12.5px;cursor:pointer}",
    ".sources{margin:8px 0 0;padding:6px 0 0;border-top:1px solid #eceef1;list-style:none;font-size:12.5px}",
    ".sources li::before{content:'Source: ';color:#5f6368}",
    ".sources a{color:#1a5fb4}",
    ".rate{display:flex;gap:6px;margin-top:6px}",
    ".rate button{border:1px solid #d5d8dc;background:#fff;color:#5f6368;border-radius:14px;padding:3px 10px;cursor:pointer;",
    "font-size:13px}",
    ".rate button[aria-pressed=true]{background:#e7f0ec;border-color:var(--hd-accent-text);color:var(--hd-accent-text)}",
    ".rate svg{width:15px;height:15px;fill:currentColor;vertical-align:-2px}",
    ".rate .down svg{transform:rotate(180deg)}",
    ".why{display:flex;gap:6px;margin-top:6px;padding:0;border:0;background:none}",
    ".why input{flex:1;min-width:0;border:1px solid #c9ccd1;border-radius:8px;padding:4px 8px;font-size:13px}",
    ".why button{background:#fff;color:#1d1d1f;border:1px solid #c9ccd1;border-radius:8px;padding:2px 10px;font-size:13px}",
    ".thanks{margin:6px 0 0;font-size:12.5px;color:#5f6368}",
    ".typing{align-self:flex-start;padding:10px 14px;background:#fff;border:1px solid #e2e4e8;border-radius:14px}",
    ".typing[hidden]{display:none}",
    ".typing i{display:inline-block;width:7px;height:7px;margin:0 2px;border-radius:50%;background:#9aa0a6;",
    "animation:hd-b 1.2s infinite ease-in-out}",
    ".typing i:nth-of-type(2){animation-delay:.15s}.typing i:nth-of-type(3){animation-delay:.3s}",
    "@keyframes hd-b{0%,80%,100%{transform:scale(.6);opacity:.5}40%{transform:scale(1);opacity:1}}",
    ".alert{margin:0;padding:8px 14px;background:#fdecea;color:#8a1c12;font-size:13.5px;flex-shrink:0}",
    ".alert[hidden],.conn[hidden],.count[hidden]{display:none}",
    ".conn{margin:0;padding:6px 14px;background:#fff4d6;color:#5c3d00;font-size:13.5px;flex-shrink:0}",
    ".count{margin:0;padding:2px 12px 0;text-align:right;font-size:12px;color:#5f6368;background:#fff;flex-shrink:0}",
    ".count.over{color:#8a1c12;font-weight:600}",
    "form{display:flex;gap:8px;padding:10px;border-top:1px solid #e2e4e8;background:#fff;flex-shrink:0}",
    "textarea{flex:1;resize:none;border:1px solid #c9ccd1;border-radius:10px;padding:9px 10px;font-size:15px;",
    "max-height:120px;color:#1d1d1f;background:#fff}",
    "form button{background:var(--hd-accent);color:var(--hd-on-accent);border:0;border-radius:10px;padding:0 16px;",
    "font-size:15px;cursor:pointer}",
    "form button:disabled{opacity:.6;cursor:default}",
    ".survey{padding:12px 14px;border-top:1px solid #e2e4e8;background:#fff;text-align:center;flex-shrink:0}",
    ".survey[hidden]{display:none}",
    ".survey p{margin:0 0 8px}",
    ".survey button{margin:2px;border:1px solid #c9ccd1;background:#fff;border-radius:8px;padding:6px 10px;",
    "cursor:pointer;font-size:14px}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    ".note{position:fixed;bottom:0;right:0}", // outside the panel: adds nothing to the host page's height
    // short viewports (200 % zoom, a phone on its side): full height, a compact header, and the box
    // never pushes the Send button out of the panel
    "@media (max-height:600px){.panel{top:var(--hd-y,0px);left:calc(var(--hd-r,100%) - var(--hd-pw));",
    "height:var(--hd-h,100%);border-radius:0}",
    "header{padding:6px 10px 6px 14px}h2{font-size:15px}.status{font-size:12px}.actions{margin-top:4px}",
    "header button{padding:3px 8px}form{padding:6px}textarea{max-height:30vh}.log{padding:10px;min-height:3em}}",
    // narrow viewports (a phone): the panel fills the screen (after the rule above: a phone is both)
    "@media (max-width:480px){.panel{left:var(--hd-x,0px);top:var(--hd-y,0px);width:var(--hd-w,100%);",
    "height:var(--hd-h,100%);border-radius:0}.launcher{left:calc(var(--hd-r,100%) - 74px);",
    "top:calc(var(--hd-b,100%) - 74px)}.msg{max-width:92%}}",
    // in both, the open panel covers the launcher: hidden, so neither Tab nor a screen reader finds it there
    "@media (max-width:480px),(max-height:600px){.panel:not([hidden])+.launcher{visibility:hidden}}",
    // iOS zooms into a text field whose text is under 16px when it gets the focus
    "@media (max-width:480px),(pointer:coarse){textarea,.why input{font-size:16px}}",
    "@media (prefers-reduced-motion:reduce){.typing span{animation:none}}"
  ].join("");

  // ---- colour contrast (WCAG 2 relative luminance) -------------------------------------------
  function rgb(color) { // any CSS colour -> [r, g, b] (0-255); the canvas normalises named colours, hsl()...
    try {
      var ctx = document.createElement("canvas").getContext("2d");
      ctx.fillStyle = "#000"; ctx.fillStyle = color;
      var v = String(ctx.fillStyle), m;
      if ((m = /^#([0-9a-f]{6})$/i.exec(v))) return [0, 2, 4].map(function (i) { return parseInt(m[1].substr(i, 2), 16); });
      if ((m = /rgba?\(([^)]+)\)/.exec(v))) return m[1].split(",").slice(0, 3).map(function (x) { return parseFloat(x); });
    } catch (e) { /* no canvas: assume a dark colour */ }
    return [0, 0, 0];
  }
  function luminance(color) {
    var c = rgb(color).map(function (x) { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  }
  function contrast(a, b) {
    var la = luminance(a), lb = luminance(b);
    return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
  }
  function onAccent(color) { return contrast(color, "#fff") >= contrast(color, "#000") ? "#fff" : "#000"; }

  // ---- tiny DOM helper: attributes via setAttribute, text via textContent only -------------
  function el(tag, attrs, kids) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "on") Object.keys(attrs.on).forEach(function (ev) { node.addEventListener(ev, attrs.on[ev]); });
      else if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) node.setAttribute(k, attrs[k] === true ? "" : attrs[k]);
    });
    (kids || []).forEach(function (kid) { if (kid) node.appendChild(kid); });
    return node;
  }

  function svg(d) {
    var ns = "http://www.w3.org/2000/svg";
    var node = document.createElementNS(ns, "svg");
    node.setAttribute("viewBox", "0 0 24 24");
    node.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    node.appendChild(path);
    return node;
  }
  function thumb() {
    return svg("M2 10h4v11H2zM8 21h9.5a2 2 0 0 0 2-1.6l1.4-7A2 2 0 0 0 19 10h-5.5l.9-4.3a1.8 1.8 0 0 0-3.2-1.4L8 9.5z");
  }

  function icon() {
    return svg("M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H8l-5 4V5a2 2 0 0 1 1-2zm3 6v2h10V9H7zm0 4v2h7v-2H7z");
  }

  // ---- state ---------------------------------------------------------------------------------
  var state = load();
  var lastSeq = 0;
  var mode = "bot";
  var streams = {}; // reply_to -> bubble being streamed
  var pending = {}; // client_message_id -> customer bubble
  var typingTimer = null;
  var stream = null; // {abort: fn}
  var retryDelay = 1000;
  var unread = 0;
  var ready = null;
  var waiting = false; // a reply to the customer's message is expected
  var ghost = null; // the "Not sent" bubble whose text went back into the box
  var seen = {}; // client ids of customer messages the server has

  function load() {
    try { return JSON.parse(localStorage.getItem(KEY)) || {}; } catch (e) { return {}; }
  }
  // the stored conversation is shared by the tabs: a tab writes or removes only its own, never one that
  // another tab put there meanwhile (it follows that one instead: follow())
  function save() {
    try {
      var kept = load();
      if (!kept.id || kept.id === state.id) localStorage.setItem(KEY, JSON.stringify(state));
    } catch (e) { /* private mode: no persistence */ }
  }
  function forget() {
    var gone = state.id;
    // unsent messages of this conversation go with the next one (a retry starts it)
    keepUnsent(unsent().map(function (d) { d.conv = ""; return d; }));
    state = {};
    lastSeq = 0;
    connBox.hidden = true;
    try { if (gone && load().id === gone) localStorage.removeItem(KEY); } catch (e) { /* ignore */ }
  }

  // messages that were not sent ({conv, cid, text}), kept for this tab so that a reload does not lose
  // them; the conversation and client id let a retry be stored once even if the first try got through
  var UNSENT = KEY + ":unsent";
  function unsent() {
    try { return JSON.parse(sessionStorage.getItem(UNSENT)) || []; } catch (e) { return []; }
  }
  function keepUnsent(list) {
    try {
      if (list.length) sessionStorage.setItem(UNSENT, JSON.stringify(list));
      else sessionStorage.removeItem(UNSENT);
    } catch (e) { /* storage full or disabled: kept on screen only */ }
  }
  function dropUnsent(cid) {
    if (cid) keepUnsent(unsent().filter(function (d) { return d.cid !== cid; }));
  }
  function addUnsent(cid, text) {
    keepUnsent(unsent().filter(function (d) { return d.cid !== cid; }).concat([{ conv: state.id || "", cid: cid, text: text }]));
  }
  function restoreUnsent() { // after the history: as "Not sent" bubbles with Retry
    keepUnsent(unsent().filter(function (d) {
      if (seen[d.cid]) return false; // it did get through: the history has it
      var node = bubble("customer", d.text);
      node.setAttribute("data-cid", d.cid);
      if (d.conv) node.setAttribute("data-conv", d.conv);
      markFailed(node, d.text);
      return true;
    }));
  }

  // ---- DOM -----------------------------------------------------------------------------------
  var host = el("div", { id: "hybridesk-widget" });
  var root = host.attachShadow({ mode: "open" });
  host.style.setProperty("--hd-accent", COLOR);
  host.style.setProperty("--hd-on-accent", ON_ACCENT);
  host.style.setProperty("--hd-accent-text", contrast(COLOR, "#fff") >= 4.5 ? COLOR : "#1d1d1f");
  var badge = el("span", { "class": "badge", hidden: true, "aria-hidden": "true" });
  var launcher = el("button", { "class": "launcher", type: "button", "aria-expanded": "false",
    "aria-controls": "hd-panel", "aria-label": "Open chat: " + TITLE, on: { click: toggle, keydown: onLauncherKey } },
    [icon(), badge]);
  var statusLine = el("p", { "class": "status", id: "hd-status", text: MODES.bot });
  var humanBtn = el("button", { type: "button", "class": "human", text: "Talk to a person", on: { click: askHuman } });
  var endBtn = el("button", { type: "button", "class": "end", text: "End chat", hidden: true, on: { click: showSurvey } });
  var closeBtn = el("button", { type: "button", "class": "close", "aria-label": "Close chat", text: "✕", on: { click: close } });
  var log = el("div", { "class": "log", role: "log", "aria-live": "polite", "aria-label": "Conversation", tabindex: "0" });
  // inside the log (the one live region for the conversation): showing it is announced once, as text
  var typing = el("div", { "class": "typing", hidden: true },
    [el("span", { "class": "sr", text: "Assistant is typing" }), el("i"), el("i"), el("i")]);
  var announcer = el("div", { "class": "sr note", role: "status" }); // short notices only, never a reply
  var alertBox = el("p", { "class": "alert", role: "alert", hidden: true });
  var connBox = el("p", { "class": "conn", role: "status", hidden: true });
  var counter = el("p", { "class": "count", id: "hd-count", hidden: true });
  var input = el("textarea", { id: "hd-input", rows: "1", placeholder: "Type your question…", "aria-label": "Your message",
    dir: "auto", "aria-describedby": "hd-count", autocomplete: "off",
    on: { keydown: onKey, input: grow } });
  var sendBtn = el("button", { type: "submit", text: "Send" });
  var form = el("form", { on: { submit: onSubmit } }, [input, sendBtn]);
  var survey = el("div", { "class": "survey", hidden: true });
  var panel = el("section", { "class": "panel", id: "hd-panel", role: "dialog", "aria-labelledby": "hd-title",
    "aria-describedby": "hd-status", hidden: true, on: { keydown: onPanelKey } }, [
    el("header", {}, [el("div", { "class": "top" }, [el("div", { "class": "head" }, [el("h2", { id: "hd-title", text: TITLE }),
      statusLine]), closeBtn]), el("div", { "class": "actions" }, [humanBtn, endBtn])]),
    log, connBox, alertBox, counter, form, survey
  ]);
  root.appendChild(el("style", { text: CSS_TEXT }));
  root.appendChild(panel);
  root.appendChild(launcher);
  root.appendChild(announcer); // outside the panel: also heard while the panel is closed
  log.appendChild(typing);


  // ---- where it goes ----------------------------------------------------------------------------
  var vv = window.visualViewport;
  function fit() { // the visual viewport's box, in the layout viewport's coordinates (see the CSS)
    var x = vv.offsetLeft, y = vv.offsetTop;
    [["x", x], ["y", y], ["w", vv.width], ["h", vv.height], ["r", x + vv.width], ["b", y + vv.height]]
      .forEach(function (v) { host.style.setProperty("--hd-" + v[0], v[1] + "px"); });
  }
  if (vv) { fit(); vv.addEventListener("resize", fit); vv.addEventListener("scroll", fit); }

  // on a narrow screen the panel covers the whole page: then it is a modal dialog (the launcher under
  // it is hidden by the CSS); on a wider one the page beside it stays usable, as before
  var NARROW = window.matchMedia ? matchMedia("(max-width:480px)") : null;
  function covers() {
    var yes = !!(NARROW && NARROW.matches);
    panel.setAttribute("aria-modal", String(yes));
    return yes;
  }
  window.addEventListener("resize", covers);

  // ---- open / close / keyboard -----------------------------------------------------------------
  function open() {
    covers();
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    setUnread(0);
    try { sessionStorage.setItem(KEY + ":open", "1"); } catch (e) { /* ignore */ }
    scrollDown();
    input.focus();
  }
  function close() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    setUnread(unread);
    try { sessionStorage.removeItem(KEY + ":open"); } catch (e) { /* ignore */ }
    launcher.focus();
  }
  function toggle() { if (panel.hidden) open(); else close(); }
  function onPanelKey(ev) {
    if (ev.key === "Escape") { ev.preventDefault(); close(); return; }
    if (ev.key !== "Tab" || !covers()) return;
    // a modal panel keeps the focus: Tab after its last control goes to its first, Shift+Tab the other way
    var all = [].filter.call(panel.querySelectorAll("button,textarea,input,a[href],[tabindex]"), function (n) {
      return n.tabIndex >= 0 && !n.disabled && n.getClientRects().length;
    });
    var i = all.indexOf(root.activeElement), at = i < 0 ? -1 : i + (ev.shiftKey ? -1 : 1);
    if (at < 0 || at >= all.length) { ev.preventDefault(); all[ev.shiftKey ? all.length - 1 : 0].focus(); }
  }
  // the launcher is outside the panel: Escape there closes the open panel too
  function onLauncherKey(ev) { if (ev.key === "Escape" && !panel.hidden) { ev.preventDefault(); close(); } }
  // the badge is decoration (aria-hidden): the count is in the launcher's name
  function setUnread(n) {
    unread = n;
    badge.textContent = String(n);
    badge.hidden = !n;
    launcher.setAttribute("aria-label", (panel.hidden ? "Open chat: " : "Close chat: ") + TITLE +
      (n ? ", " + n + (n === 1 ? " new message" : " new messages") : ""));
  }
  function onKey(ev) {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); onSubmit(ev); }
  }
  function grow() {
    input.style.height = "auto"; input.style.height = Math.min(input.scrollHeight, 120) + "px";
    // a counter near the server's limit (no maxlength: a paste would be cut silently, and the
    // server counts characters, not the UTF-16 units maxlength counts)
    var n = input.value.length > MAX_CHARS * 0.8 ? Array.from(input.value).length : 0;
    counter.hidden = n < MAX_CHARS * 0.8;
    counter.textContent = n > MAX_CHARS ? n + " / " + MAX_CHARS + " characters: please shorten your message"
      : n + " / " + MAX_CHARS + " characters";
    counter.classList.toggle("over", n > MAX_CHARS);
  }
  function scrollDown() { log.scrollTop = log.scrollHeight; }
  // follow new text only when the customer is at the bottom, not while they read earlier messages
  function atBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 60; }

  // ---- rendering -----------------------------------------------------------------------------
  var WHO = { customer: "You", bot: "Assistant", agent: "Support team", system: "" };
  var NEW_MESSAGE = "New message from support";
  var quiet = false; // rendering the history after a reload: not news

  function bubble(role, text, id) {
    var textNode = el("div", { "class": "text", dir: "auto" });
    textNode.textContent = text;
    var node = el("div", { "class": "msg " + role, "data-role": role, "data-id": id || null }, [
      el("div", { "class": "who", text: role === "customer" ? "You:" : WHO[role] || "" }), textNode]);
    var follow = atBottom() || role === "customer";
    log.insertBefore(node, typing);
    if (role !== "customer" && panel.hidden && !quiet) {
      setUnread(unread + 1);
      // once (not per message, nor twice while it is still there) in the polite region outside the panel
      if (announcer.textContent !== NEW_MESSAGE) announce(NEW_MESSAGE);
    }
    if (follow) scrollDown();
    return node;
  }

  function setText(node, text) { node.querySelector(".text").textContent = text; }

  function finishBot(node, m) {
    var follow = atBottom();
    node.setAttribute("data-id", String(m.id));
    node.removeAttribute("aria-busy");
    setText(node, m.text);
    var old = node.querySelector(".sources");
    if (old) old.remove();
    var links = (m.sources || []).map(function (s) {
      var href = safeLink(s.url);
      var label = s.title && s.heading && s.heading !== s.title ? s.title + " › " + s.heading : (s.title || s.document_id || "policy");
      return el("li", {}, [href ? el("a", { href: href, target: "_blank", rel: "noopener noreferrer", text: label })
        : el("span", { text: label })]);
    });
    if (links.length) node.appendChild(el("ul", { "class": "sources", "aria-label": "Sources" }, links));
    if (m.role === "bot" && !node.querySelector(".rate")) node.appendChild(rating(m.id));
    // no second announcement: the log (role=log) reads the finished reply out once
    if (follow) scrollDown();
  }

  function safeLink(url) {
    if (!url) return null;
    try {
      var u = new URL(url, server + "/");
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) { return null; }
  }

  function rating(id) {
    var current = (state.ratings || {})[id];
    var up = el("button", { type: "button", "aria-label": "Helpful answer", "aria-pressed": String(current === "up") }, [thumb()]);
    var down = el("button", { type: "button", "class": "down", "aria-label": "Not helpful",
      "aria-pressed": String(current === "down") }, [thumb()]);
    function rate(value) {
      api("POST", "/api/messages/" + id + "/rating", { rating: value }).then(function () {
        state.ratings = state.ratings || {};
        state.ratings[id] = value; save();
        up.setAttribute("aria-pressed", String(value === "up"));
        down.setAttribute("aria-pressed", String(value === "down"));
        announce("Thanks for your feedback.");
        if (value === "down" && !group.parentNode.querySelector(".why")) group.after(why(id));
      }, showError);
    }
    up.addEventListener("click", function () { rate("up"); });
    down.addEventListener("click", function () { rate("down"); });
    var group = el("div", { "class": "rate", role: "group", "aria-label": "Was this answer helpful?" }, [up, down]);
    return group;
  }

  function why(id) { // an optional comment after a thumbs down
    var box = el("input", { type: "text", maxlength: "500", "aria-label": "What was wrong with this answer? (optional)",
      placeholder: "What was missing? (optional)" });
    var f = el("form", { "class": "why" }, [box, el("button", { type: "submit", text: "Send" })]);
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (!box.value.trim()) { f.remove(); return; }
      api("POST", "/api/messages/" + id + "/rating", { rating: "down", comment: box.value.trim() }).then(function () {
        f.replaceWith(el("p", { "class": "thanks", text: "Thank you — this helps us improve." }));
      }, showError);
    });
    setTimeout(function () { box.focus(); }, 0);
    return f;
  }

  function render(m) {
    if (m.seq > lastSeq) lastSeq = m.seq;
    if (log.querySelector('[data-id="' + m.id + '"]')) {
      if (m.role !== "customer") finishBot(log.querySelector('[data-id="' + m.id + '"]'), m);
      return;
    }
    if (m.role === "customer") {
      if (m.client_message_id) seen[m.client_message_id] = true;
      var mine = m.client_message_id && pending[m.client_message_id];
      if (mine) { mine.setAttribute("data-id", String(m.id)); delete pending[m.client_message_id]; return; }
      bubble("customer", m.text, m.id);
      return;
    }
    var node = m.reply_to && streams[m.reply_to];
    if (node) delete streams[m.reply_to];
    else node = bubble(m.role, m.text, m.id);
    if (m.role === "bot" || m.role === "agent") { waiting = false; hideTyping(); finishBot(node, m); }
  }

  function dropStreams() { // replies still being written that will never be finished here
    Object.keys(streams).forEach(function (id) {
      var node = streams[id];
      if (node.parentNode) node.parentNode.removeChild(node);
      delete streams[id];
    });
  }

  function onToken(ev) {
    if (mode === "human") return; // an agent has the conversation: the bot's unfinished reply is dropped
    hideTyping();
    var node = streams[ev.reply_to];
    if (!node) {
      node = streams[ev.reply_to] = bubble("bot", "");
      node.setAttribute("aria-busy", "true"); // read it out once complete, not word by word
    }
    var t = node.querySelector(".text");
    var follow = atBottom();
    t.textContent = t.textContent + ev.text;
    if (follow) scrollDown();
  }

  function setMode(next) {
    mode = MODES[next] ? next : "bot";
    panel.classList.remove("human", "handoff_requested");
    if (mode !== "bot") panel.classList.add(mode);
    statusLine.textContent = MODES[mode];
    humanBtn.hidden = mode !== "bot";
    if (mode === "human") {
      waiting = false;
      hideTyping();
      dropStreams(); // the bot's reply in progress when the agent took over is never finished (nor stored)
    }
  }

  function showTyping() {
    if (mode === "human" || !connBox.hidden) return; // no dots while the connection is down
    var follow = atBottom();
    typing.hidden = false;
    if (follow) scrollDown();
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () {
      waiting = false;
      showError(new Error("The answer is taking longer than expected. Please ask again, or ask for a person."));
    }, 90000);
  }
  function hideTyping() { typing.hidden = true; clearTimeout(typingTimer); }

  function announce(text) { // a short notice for screen readers, removed again so it is not read twice
    announcer.textContent = text;
    setTimeout(function () { if (announcer.textContent === text) announcer.textContent = ""; }, 5000);
  }

  var OFFLINE = "We could not reach the chat service. Check your connection and try again.";
  function showError(err) {
    alertBox.textContent = (err && err.message) || "Something went wrong. Please try again.";
    alertBox.hidden = false;
    hideTyping();
  }
  function clearError() { alertBox.hidden = true; alertBox.textContent = ""; }

  // the event stream is down: say so (instead of typing dots that never end) until it is back
  function connectionLost() {
    if (!connBox.hidden || !state.id) return;
    connBox.textContent = "Connection lost, retrying…";
    connBox.hidden = false;
    hideTyping();
  }
  function connectionBack() {
    if (!connBox.hidden) { connBox.hidden = true; connBox.textContent = ""; }
    if (alertBox.textContent === OFFLINE) clearError();
    if (waiting) showTyping();
  }

  // ---- HTTP ------------------------------------------------------------------------------------
  function api(method, path, body) {
    var headers = { "Content-Type": "application/json" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    return fetch(server + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined })
      .then(function (res) {
        return res.text().then(function (raw) {
          var data = null;
          try { data = raw ? JSON.parse(raw) : null; } catch (e) { data = null; }
          if (res.ok) return data;
          var e = new Error(errorText(res, data));
          e.status = res.status;
          e.code = data && data.error && data.error.code;
          throw e;
        });
      }, function () { throw new Error(OFFLINE); });
  }

  function errorText(res, data) {
    var msg = data && data.error && data.error.message;
    if (res.status === 413) return msg || "Your message is too long. Please shorten it.";
    if (res.status === 429) {
      var wait = res.headers.get("Retry-After");
      return "You are sending messages too quickly." + (wait ? " Please wait " + wait + " s and try again." : "");
    }
    return msg || "Something went wrong (" + res.status + "). Please try again.";
  }

  // ---- conversation ------------------------------------------------------------------------------
  function start() {
    greet(GREETING || "Hi! How can we help you today?");
    setMode("bot");
    try { if (sessionStorage.getItem(KEY + ":open")) open(); } catch (e) { /* ignore */ }
    if (state.id) resume().then(restoreUnsent);
    else restoreUnsent();
  }

  function resume() {
    return api("GET", "/api/conversations/" + encodeURIComponent(state.id) + "/messages").then(function (h) {
      quiet = true;
      try { (h.messages || []).forEach(render); } finally { quiet = false; }
      scrollDown();
      if (h.status === "ended") { // ended while this page was closed (an agent, or another device)
        forget(); setMode("bot"); endBtn.hidden = true;
        bubble("system", ENDED + " Write again any time to start a new chat.");
        return;
      }
      setMode(h.mode);
      endBtn.hidden = false;
      connect();
    }, function (err) {
      if (err.status === 403 || err.status === 404) forget(); // expired or unknown: start afresh on next send
    });
  }

  function greet(text) {
    quiet = true;
    bubble("bot", text).classList.add("greeting"); // a greeting is not news
    quiet = false;
  }

  function begin(fresh) {
    // another tab's conversation this tab has not followed yet (a storage event it missed): join it, do not
    // replace it; a new one only if that one is gone too
    var other = fresh ? {} : load();
    if (other.id) return follow(other).then(function () { return state.id ? null : begin(true); });
    return api("POST", "/api/conversations", { metadata: { page: location.pathname.slice(0, 200) } }).then(function (c) {
      if (state.id) return null; // this tab followed another one's new conversation meanwhile: that one it is
      state = { id: c.conversation_id, token: c.token, ratings: {} };
      save();
      endBtn.hidden = false;
      return connect();
    });
  }

  var ENDED = "This chat has ended.";

  // another tab changed the stored conversation (it ended this one, or started the next): this tab
  // follows it, as a reload would, and says so when its chat has ended
  function follow(next) {
    if ((next.id || "") === (state.id || "")) return Promise.resolve();
    var had = state.id;
    stopStream(); clearTimeout(retryTimer);
    state = next; lastSeq = 0;
    if (survey.contains(root.activeElement)) input.focus(); // the survey for that chat goes
    survey.hidden = true; endBtn.hidden = true;
    if (had) {
      dropStreams(); waiting = false; hideTyping(); connectionBack(); setMode("bot");
      if (!state.id && !ending) bubble("system", ENDED + " Write again any time to start a new chat.");
    }
    return state.id ? resume() : Promise.resolve();
  }
  window.addEventListener("storage", function (ev) { if (ev.key === KEY || ev.key === null) follow(load()); });

  function onSubmit(ev) {
    if (ev && ev.preventDefault) ev.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = ""; grow();
    // the failed message came back into the box: sending it (as is or edited) replaces its bubble
    var old = ghost && ghost.parentNode ? ghost : null;
    ghost = null;
    if (old && old.querySelector(".text").textContent !== text) { dropUnsent(old.getAttribute("data-cid")); old.remove(); old = null; }
    deliver(text, old);
  }

  function deliver(text, node) { // node: a "Not sent" bubble being sent again
    clearError();
    var before = node && node.getAttribute("data-cid"); // its kept copy goes once this try ends
    var cid = node && node.getAttribute("data-cid") && node.getAttribute("data-conv") === String(state.id)
      ? node.getAttribute("data-cid") // the same id: stored once even if the first try did reach the server
      : "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
    if (node) {
      if (node === ghost) ghost = null;
      markSent(node);
      log.insertBefore(node, typing); // it is the latest message now
      scrollDown();
    } else {
      node = bubble("customer", text);
    }
    pending[cid] = node;
    waiting = true;
    showTyping();
    (state.id ? Promise.resolve() : begin()).then(function () {
      if (node.nextSibling !== typing) log.insertBefore(node, typing); // after a joined conversation's history
      node.setAttribute("data-cid", cid);
      node.setAttribute("data-conv", state.id);
      return api("POST", "/api/conversations/" + encodeURIComponent(state.id) + "/messages",
        { text: text, client_message_id: cid });
    }).then(function (ack) {
      if (pending[cid]) { node.setAttribute("data-id", String(ack.message_id)); delete pending[cid]; }
      dropUnsent(before); dropUnsent(cid);
    }, function (err) {
      delete pending[cid];
      waiting = false;
      markFailed(node, text);
      if (err.status === 403 || err.status === 409) { forget(); stopStream(); endBtn.hidden = true; }
      dropUnsent(before);
      node.setAttribute("data-cid", cid);
      if (state.id) node.setAttribute("data-conv", state.id); else node.removeAttribute("data-conv");
      addUnsent(cid, text);
      if (!input.value) { input.value = text; grow(); ghost = node; } // to resend, or to shorten after a 413
      // the next Send starts a new conversation (forgotten above) with the message kept in the box
      showError(err.code === "conversation_ended" ? new Error(ENDED + " Press Send again to start a new chat.") : err);
    });
  }

  function markFailed(node, text) { // visible (and read out) on the bubble itself, with a way to retry
    node.classList.add("failed");
    if (node.querySelector(".unsent")) return;
    node.appendChild(el("div", { "class": "unsent" }, [el("span", { text: "Not sent" }),
      el("button", { type: "button", text: "Retry", "aria-label": "Retry sending this message", on: { click: function () {
        if (ghost === node && input.value.trim() === text) { input.value = ""; grow(); }
        deliver(text, node);
      } } })]));
  }
  function markSent(node) {
    node.classList.remove("failed");
    var note = node.querySelector(".unsent");
    if (note) note.remove();
  }

  function askHuman() {
    clearError();
    (state.id ? Promise.resolve() : begin()).then(function () {
      return api("POST", "/api/conversations/" + encodeURIComponent(state.id) + "/handoff");
    }).then(function (r) { setMode(r.mode); }, function (err) {
      if (err.code !== "conversation_ended") { showError(err); return; }
      forget(); stopStream(); endBtn.hidden = true;
      showError(new Error(ENDED + " Press \u201cTalk to a person\u201d again to start a new chat."));
    });
  }

  function showSurvey() {
    survey.textContent = "";
    var buttons = [1, 2, 3, 4, 5].map(function (n) {
      return el("button", { type: "button", "aria-label": n + " out of 5", text: "★ " + n, on: { click: function () { end(n); } } });
    });
    survey.appendChild(el("p", { id: "hd-survey", text: "How happy are you with this chat?" }));
    survey.appendChild(el("div", { role: "group", "aria-labelledby": "hd-survey" }, buttons));
    survey.appendChild(el("button", { type: "button", text: "End without rating", on: { click: function () { end(null); } } }));
    survey.appendChild(el("button", { type: "button", "class": "back", text: "Back to chat", on: { click: function () {
      survey.hidden = true; input.focus();
    } } }));
    survey.hidden = false;
    buttons[4].focus();
  }

  var ending = false; // this tab is ending the chat: its own "ended" event is not news
  function end(score) {
    var id = state.id;
    ending = true;
    api("POST", "/api/conversations/" + encodeURIComponent(id) + "/end", { satisfaction: score }).then(function () {
      ending = false;
      if (state.id && state.id !== id) return; // another tab moved this one on to its next chat meanwhile
      closed("Chat ended. Thank you! Write again any time to start a new chat.", true);
      input.focus(); // not <body>: the survey that had the focus is gone
    }, function (err) { ending = false; showError(err); });
  }

  // the chat is over (ended here, or the server said so: an agent ended it): the next message starts a new one
  function closed(note, mine) {
    if (!state.id && !mine) return; // already followed from another tab, which said so
    if (state.id) { stopStream(); clearTimeout(retryTimer); forget(); }
    if (survey.contains(root.activeElement)) input.focus();
    survey.hidden = true; endBtn.hidden = true; setMode("bot");
    dropStreams(); waiting = false; hideTyping(); connectionBack();
    bubble("system", note);
  }

  // ---- live events (Server-Sent Events over fetch, so the token travels in a header) -----------
  function connect() {
    stopStream();
    var controller = new AbortController();
    var me = { abort: function () { controller.abort(); } };
    stream = me;
    ready = new Promise(function (resolve) {
      var url = server + "/api/conversations/" + encodeURIComponent(state.id) + "/events?after_seq=" + lastSeq;
      fetch(url, { headers: { Authorization: "Bearer " + state.token, Accept: "text/event-stream" },
        signal: controller.signal, cache: "no-store" }).then(function (res) {
        if (res.status === 403 || res.status === 404) { forget(); resolve(); return null; }
        if (!res.ok || !res.body) throw new Error("stream " + res.status);
        return read(res.body.getReader(), resolve);
      }).then(function () {
        resolve();
        if (stream === me) { connectionLost(); reconnect(); }
      }, function () {
        resolve();
        if (stream === me) { connectionLost(); reconnect(); }
      });
      setTimeout(resolve, 4000); // never block a send on a slow stream
    });
    return ready;
  }

  var retryTimer = null;
  function reconnect() {
    if (!state.id) return;
    clearTimeout(retryTimer);
    retryTimer = setTimeout(function () { if (state.id && stream) connect(); }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 15000);
  }
  // back online: try at once instead of waiting out the back-off
  window.addEventListener("online", function () {
    if (state.id && stream && !connBox.hidden) { retryDelay = 1000; clearTimeout(retryTimer); connect(); }
  });

  function stopStream() {
    var s = stream;
    stream = null;
    if (s) s.abort();
  }

  function read(reader, onReady) {
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return null;
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
        var cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          var block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          dispatch(block, onReady);
        }
        return pump();
      });
    }
    return pump();
  }

  function dispatch(block, onReady) {
    var name = "message", data = [];
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event:") === 0) name = line.slice(6).trim();
      else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
    });
    if (!data.length) return; // a keep-alive comment
    var payload;
    try { payload = JSON.parse(data.join("\n")); } catch (e) { return; }
    if (name === "ready") {
      retryDelay = 1000; setMode(payload.mode); connectionBack(); onReady();
      if (payload.max_chars > 0) { MAX_CHARS = payload.max_chars; grow(); }
    }
    else if (name === "message") render(payload);
    else if (name === "token") onToken(payload);
    else if (name === "mode") setMode(payload.mode);
    else if (name === "status" && payload.status === "ended" && !ending) closed(ENDED + " Write again any time to start a new chat.");
    else if (name === "error") showError(payload);
  }

  // ---- go (last: everything above is defined by now) -------------------------------------------
  function mount() { document.body.appendChild(host); start(); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
