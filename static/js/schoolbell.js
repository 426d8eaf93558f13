/*
 * Schoolbell browser client. One tag, no build step:
 *
 *   <script src="https://bell.school.example/static/js/schoolbell.js" defer></script>
 *
 * On Schoolbell's own pages the session cookie signs the socket in. Other web apps (on
 * an origin listed in SCHOOLBELL_ALLOWED_ORIGINS) pass a client JWT from their server:
 *   <script src=".../schoolbell.js" data-token="<JWT from POST /api/v1/tokens>" defer></script>
 *
 * It connects, resumes from the last announcement it has, reconnects with exponential
 * backoff and jitter, shows alerts as accessible toasts (emergencies as a full-screen
 * overlay until confirmed), drops duplicates by id and sends receipts.
 * Events on document: "schoolbell:notification" (detail: the message) and
 * "schoolbell:status" (detail: {state: "online"|"offline"|"stopped", reason}).
 *
 * Schoolbell.renderAlert(message, {preview: true}) returns the alert's element, built by
 * the same function as the toast and the overlay: a page that previews an announcement
 * (the compose page does) shows exactly what recipients will get, with its buttons
 * disabled. `message` has the shape of a "notification" message (docs/protocol.md); id
 * and created_at may be left out. Without `preview`, the buttons send their receipts and
 * then call `onDone`, if given.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var base = new URL(script.src, location.href);
  var options = {
    url: script.dataset.url || (base.protocol === "https:" ? "wss:" : "ws:") + "//" + base.host + "/ws",
    token: script.dataset.token || null,
    toasts: script.dataset.toasts !== "off"
  };
  var BACKOFF_MIN_MS = 1000, BACKOFF_MAX_MS = 30000, SILENCE_MS = 75000, PING_MS = 30000;
  // After a restart (1001) the server is back within seconds: retry every 0.5-5 s
  // (spread at random) for about half a minute before backing off further.
  var RESTART_MAX_MS = 5000, RESTART_ATTEMPTS = 12;
  var SEEN_LIMIT = 300;

  var socket = null, attempt = 0, stopped = false, userId = null, restarting = false;
  // Ids this page has handled, plus those any page of this user had handled when this one
  // (re)connected. Not the shared list itself: another open tab writes to it first, and
  // every open tab must still show a live announcement.
  var handled = {};
  var reconnectTimer = null, pingTimer = null, lastHeard = 0;

  function store(key, value) {
    try {
      if (value === undefined) return localStorage.getItem(key);
      localStorage.setItem(key, value);
    } catch (e) { /* storage may be disabled: then we only lose cross-reload memory */ }
    return null;
  }
  function key(name) { return "schoolbell:" + userId + ":" + name; }
  function lastId() { return parseInt(store(key("last")) || "0", 10) || null; }
  function seen() {
    try { return JSON.parse(store(key("seen")) || "[]"); } catch (e) { return []; }
  }
  function remember(id) {
    var ids = seen();
    if (ids.indexOf(id) < 0) ids.push(id);
    store(key("seen"), JSON.stringify(ids.slice(-SEEN_LIMIT)));
    if (!lastId() || id > lastId()) store(key("last"), String(id));
  }

  function emit(name, detail) {
    document.dispatchEvent(new CustomEvent("schoolbell:" + name, { detail: detail }));
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }
  function ack(id, state) { send({ type: "ack", id: id, state: state }); }

  // Connection ---------------------------------------------------------------------
  function connect() {
    clearTimeout(reconnectTimer);
    var url = options.url;
    // A token rides along as a subprotocol: the socket is signed in before the handshake
    // completes (no `auth` round trip), and the token stays out of URLs and logs.
    socket = options.token
      ? new WebSocket(url, ["schoolbell", "schoolbell.jwt." + options.token])
      : new WebSocket(url);
    socket.onopen = function () { lastHeard = Date.now(); };
    socket.onmessage = function (event) {
      lastHeard = Date.now();
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.type === "hello") onHello(message);
      else if (message.type === "notification") onNotification(message);
      else if (message.type === "retract") removeToast(message.id);
      else if (message.type === "receipt") onReceipt(message);
      else if (message.type === "error" && window.console) console.warn("schoolbell:", message.code, message.message);
    };
    socket.onclose = function (event) {
      clearInterval(pingTimer);
      socket = null;
      if (event.code === 1008) {  // refused by policy: retrying the same way cannot help
        stopped = true;
        banner("Live announcements stopped: " + (event.reason || "not signed in") + ". Reload the page to try again.");
        emit("status", { state: "stopped", reason: event.reason });
        return;
      }
      emit("status", { state: "offline", reason: event.reason });
      scheduleReconnect(event.code === 1001);
    };
  }

  function scheduleReconnect(serverRestarting) {
    if (stopped) return;
    banner("Reconnecting\u2026");
    if (serverRestarting) restarting = true;
    // Full jitter: spread thousands of tabs over the window instead of a thundering herd.
    var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, attempt));
    if (restarting && attempt < RESTART_ATTEMPTS) ceiling = RESTART_MAX_MS;
    var delay = restarting ? 500 + Math.random() * (ceiling - 500) : Math.random() * ceiling;
    attempt += 1;
    reconnectTimer = setTimeout(connect, delay);
  }

  function onHello(message) {
    userId = message.user.id;
    attempt = 0;
    restarting = false;
    banner(null);
    // A new epoch means the database was reset: ids we hold mean nothing any more.
    if (store(key("epoch")) !== message.epoch) {
      store(key("epoch"), message.epoch);
      store(key("last"), "0");
      store(key("seen"), "[]");
      handled = {};
    }
    seen().forEach(function (id) { handled[id] = true; });
    send({ type: "resume", last_id: lastId() });
    clearInterval(pingTimer);
    pingTimer = setInterval(function () {
      if (Date.now() - lastHeard > SILENCE_MS && socket) { socket.close(4000, "silent"); return; }
      send({ type: "ping" });
    }, PING_MS);
    emit("status", { state: "online" });
  }

  function onNotification(message) {
    var duplicate = handled[message.id] === true;
    if (!duplicate) {
      handled[message.id] = true;
      remember(message.id);
      ack(message.id, "delivered");
    }
    // Announcements that still need a confirmation come back until confirmed.
    if (duplicate && !message.require_ack) return;
    if (document.getElementById("schoolbell-toast-" + message.id)) return;
    emit("notification", message);
    if (!options.toasts) return;
    if (message.priority === "emergency") showOverlay(message);
    else showToast(message);
    if (message.priority !== "normal" && document.hidden) systemNotification(message);
  }

  // Read or confirmed in another tab (or the inbox page): this tab lets it go too.
  function onReceipt(message) {
    removeToast(message.id);
    emit("receipt", message);
  }

  // Presentation -------------------------------------------------------------------
  function ensureStyles() {
    if (document.getElementById("schoolbell-styles")) return;
    var link = document.createElement("link");
    link.id = "schoolbell-styles";
    link.rel = "stylesheet";
    link.href = new URL("../css/schoolbell.css", base).href;
    document.head.appendChild(link);
  }

  function region() {
    var el = document.getElementById("schoolbell-toasts");
    if (!el) {
      ensureStyles();
      el = document.createElement("div");
      el.id = "schoolbell-toasts";
      el.className = "schoolbell-toasts";
      el.setAttribute("role", "region");
      el.setAttribute("aria-label", "Announcements");
      el.setAttribute("aria-live", "polite");
      document.body.appendChild(el);
    }
    return el;
  }

  function banner(text) {
    var el = document.getElementById("schoolbell-banner");
    if (!text) { if (el) el.hidden = true; return; }
    if (!el) {
      ensureStyles();
      el = document.createElement("div");
      el.id = "schoolbell-banner";
      el.className = "schoolbell-banner";
      el.setAttribute("role", "status");
      document.body.appendChild(el);
    }
    el.textContent = text;
    el.hidden = false;
  }

  // The alert: the one definition of its markup and of which buttons it has, used for
  // the live toast, the emergency overlay and the compose page's preview. Confirm only
  // when confirmation is required; Dismiss, or "Later" while confirmation is pending;
  // an emergency that must be confirmed cannot be put off.
  function renderAlert(message, opts) {
    opts = opts || {};
    var el = document.createElement("section");
    el.className = "schoolbell-toast schoolbell-" + message.priority;
    if (message.id != null) {
      el.id = "schoolbell-toast-" + message.id;
      el.dataset.notificationId = message.id;
    }
    var title = document.createElement("h2");
    title.className = "schoolbell-title";
    title.textContent = message.title;  // plain text, never markup
    var body = document.createElement("div");
    body.className = "schoolbell-body";
    body.innerHTML = message.body_html;  // sanitised by the server (nh3), same as the inbox
    var meta = document.createElement("p");
    meta.className = "schoolbell-meta";
    meta.textContent = (message.author ? message.author + " \u00b7 " : "") +
      (message.created_at ? new Date(message.created_at).toLocaleString() : "now");
    el.append(title, body, meta);
    if (message.link) {
      var a = document.createElement("a");
      a.href = message.link;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      a.textContent = "Open link";
      el.appendChild(a);
    }
    var row = document.createElement("div");
    row.className = "schoolbell-actions";
    function answer(label, className, state) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = className;
      b.textContent = label;
      if (opts.preview) b.disabled = true;  // a preview sends no receipts
      else b.addEventListener("click", function () {
        ack(message.id, state);
        if (opts.onDone) opts.onDone();
      });
      row.appendChild(b);
    }
    if (message.require_ack) answer("Confirm", "schoolbell-confirm", "acknowledged");
    if (!message.require_ack || message.priority !== "emergency") {
      answer(message.require_ack ? "Later" : "Dismiss", "schoolbell-dismiss", "read");
    }
    el.appendChild(row);
    return el;
  }

  function showToast(message) {
    var el = renderAlert(message, { onDone: function () { el.remove(); } });
    el.setAttribute("role", message.priority === "urgent" ? "alert" : "status");
    el.tabIndex = -1;
    el.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && !message.require_ack) { ack(message.id, "read"); el.remove(); }
    });
    region().prepend(el);
  }

  function showOverlay(message) {
    ensureStyles();
    var previous = document.activeElement;
    var overlay = document.createElement("div");
    overlay.className = "schoolbell-overlay";
    var el = renderAlert(message, {
      onDone: function () {
        overlay.remove();
        if (previous && previous.focus && document.contains(previous)) previous.focus();
      }
    });
    el.setAttribute("role", "alertdialog");
    el.setAttribute("aria-modal", "true");
    el.setAttribute("aria-labelledby", el.id + "-title");
    el.querySelector("h2").id = el.id + "-title";
    overlay.appendChild(el);
    document.body.appendChild(overlay);
    var first = el.querySelector("button");
    if (first) first.focus();
  }

  // While an overlay is up it is modal: Tab and Shift+Tab cycle through its own controls.
  function trapFocus(e) {
    if (e.key !== "Tab") return;
    var overlays = document.querySelectorAll(".schoolbell-overlay");
    if (!overlays.length) return;
    var items = Array.prototype.slice.call(
      overlays[overlays.length - 1].querySelectorAll("a[href], button"));
    if (!items.length) return;
    var i = items.indexOf(document.activeElement);
    e.preventDefault();
    if (e.shiftKey) items[i <= 0 ? items.length - 1 : i - 1].focus();
    else items[i < 0 || i === items.length - 1 ? 0 : i + 1].focus();
  }

  function removeToast(id) {
    var el = document.getElementById("schoolbell-toast-" + id);
    if (el) (el.parentElement.classList.contains("schoolbell-overlay") ? el.parentElement : el).remove();
  }

  function systemNotification(message) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    var text = document.createElement("div");
    text.innerHTML = message.body_html;
    var n = new Notification(message.title, { body: text.textContent.slice(0, 200), tag: "schoolbell-" + message.id });
    n.onclick = function () { window.focus(); n.close(); };
  }

  function askPermission() {
    if ("Notification" in window && Notification.permission === "default") Notification.requestPermission();
  }

  window.Schoolbell = { ack: ack, askPermission: askPermission, renderAlert: renderAlert, options: options };
  document.addEventListener("keydown", trapFocus);
  document.addEventListener("click", function (e) {
    if (e.target.closest && e.target.closest("[data-schoolbell-ask-permission]")) askPermission();
  });

  if (document.body) connect();
  else document.addEventListener("DOMContentLoaded", connect);
})();
