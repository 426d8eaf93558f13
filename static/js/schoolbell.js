/*
 * Schoolbell browser client. One tag, no build step:
 *
 *   <script src="https://bell.school.example/static/js/schoolbell.js" defer></script>
 *
 * On Schoolbell's own pages the session cookie signs the socket in (the page says whose
 * it is with data-user). Other web apps (on an origin listed in SCHOOLBELL_ALLOWED_ORIGINS)
 * pass a client JWT from their server:
 *   <script src=".../schoolbell.js" data-token="<JWT from POST /api/v1/tokens>" defer></script>
 *
 * It connects, resumes from the last announcement it has, reconnects with exponential
 * backoff and jitter, shows alerts as accessible toasts (emergencies as a full-screen
 * overlay until confirmed), drops duplicates by id and sends receipts.
 * Events on document: "schoolbell:notification" (detail: the message),
 * "schoolbell:status" (detail: {state: "online"|"offline"|"stopped", reason}) and
 * "schoolbell:all_clear" (detail: the message: an emergency is over), in every tab.
 *
 * Emergencies: a drill says DRILL on every alert; the overlay asks for a roll call
 * ("I'm safe" / "I need help" and a short note, sent as an `answer`); an all clear turns
 * the open overlay into its calm message (docs/protocol.md, "Emergencies").
 *
 * One socket per browser: the tabs of one user (of one server, on one origin) share one
 * WebSocket. The tab holding the Web Lock named after server and user is the leader: it
 * owns the socket and relays what arrives over a BroadcastChannel of the same name; the
 * others (followers) show what it relays and hand their receipts to it. When the leader
 * goes, the lock passes to a waiting tab, which connects and resumes. The leader tells
 * the server how many tabs it serves ({"type": "tabs", "count": N}) so presence still
 * counts tabs. Without Web Locks or BroadcastChannel each tab keeps a socket of its own.
 * docs/protocol.md, "One socket per browser", has the whole story.
 *
 * Schoolbell.renderAlert(message, {preview: true}) returns the alert's element, built by
 * the same function as the toast and the overlay: a page that previews an announcement
 * (the compose page does) shows exactly what recipients will get, with its buttons
 * disabled. `message` has the shape of a "notification" message (docs/protocol.md); id
 * and created_at may be left out. Without `preview`, the buttons send their receipts and
 * then call `onDone`, if given.
 *
 * Language: English is built in; each `_("...")` below is the English text and the msgid
 * of webapp/translations (`make translations` extracts them). The server hands over the
 * translations and the school's time zone (webapp/i18n.py) in its `hello`, so embeds on
 * other apps' pages speak the person's language too, and Schoolbell's own pages carry
 * them in <script type="application/json" id="schoolbell-i18n"> for what is shown before
 * the socket is up. Schoolbell.t(text, values) translates for the page's other scripts.
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
  // The leader calls the roll this often; a follower silent for FORGET_MS is gone.
  var ROLL_CALL_MS = 3000, FORGET_MS = 10000, MAX_TABS = 100, OUTSTANDING_LIMIT = 50;

  // Language ------------------------------------------------------------------------
  var i18n = { locale: null, timeZone: undefined, strings: {} };
  // Marks a string for the catalogue; it is translated where it is shown.
  function N_(text) { return text; }
  // The text in the page's language, its {name} placeholders filled from `values`.
  function _(text, values) {
    var s = Object.prototype.hasOwnProperty.call(i18n.strings, text) ? i18n.strings[text] : text;
    if (!values) return s;
    return s.replace(/\{(\w+)\}/g, function (all, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : all;
    });
  }
  // {locale, time_zone, strings?} from the server: the page's block, or a hello.
  function useLanguage(data) {
    if (!data || typeof data.locale !== "string") return;
    i18n = { locale: data.locale, timeZone: data.time_zone || undefined, strings: data.strings || {} };
    var toasts = document.getElementById("schoolbell-toasts");
    if (toasts) toasts.setAttribute("aria-label", _("Announcements"));
  }
  function pageLanguage() {
    var el = document.getElementById("schoolbell-i18n");
    if (!el) return;
    try { useLanguage(JSON.parse(el.textContent)); } catch (e) { /* English, then */ }
  }
  pageLanguage();
  // A time as the school reads it: its zone, the person's language.
  function when(iso) {
    var options = { dateStyle: "medium", timeStyle: "short" };
    if (i18n.timeZone) options.timeZone = i18n.timeZone;
    try { return new Date(iso).toLocaleString(i18n.locale || undefined, options); }
    catch (e) { return new Date(iso).toLocaleString(); }  // an unknown zone or language
  }

  var socket = null, attempt = 0, stopped = false, userId = null, restarting = false;
  // Ids this page has handled, plus those any page of this user had handled when this one
  // (re)connected (one socket per tab) or started (tabs sharing a socket). Not the shared
  // list itself: another open tab writes to it first, and every open tab must still show
  // a live announcement.
  var handled = {}, memoryLoaded = false, tabEpoch = null;
  // The revision of each announcement this page has shown (edits bring newer ones).
  var revisions = {};
  var reconnectTimer = null, pingTimer = null, lastHeard = 0;

  // Who this page is for, before any socket says so: the subject of its token, or
  // data-user on Schoolbell's own pages. Only a name to group tabs by; the server checks
  // the token or the cookie.
  function pageUser() {
    if (!options.token) return script.dataset.user || null;
    try {
      var claims = JSON.parse(atob(options.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
      return claims.sub != null ? String(claims.sub) : null;
    } catch (e) { return null; }
  }

  // The lock and the channel: one per server and user. Locks and channels are already
  // separate per origin (an embedding page's, not the server's), so an embed on another
  // app's origin leads its own group. Two embeds with different users' tokens on one
  // origin get two groups. A cookie page without data-user can only be the cookie's user,
  // the same for every tab of the origin. A token whose subject cannot be read shares
  // nothing.
  function groupName() {
    if (!navigator.locks || typeof navigator.locks.request !== "function" ||
        typeof window.BroadcastChannel !== "function") return null;
    if (options.token && !pageUserId) return null;
    return "schoolbell:" + options.url + (pageUserId ? ":" + pageUserId : "");
  }

  var pageUserId = pageUser();
  // role: "alone" (a socket of its own), "leader" (holds the lock and the socket) or
  // "follower" (shows what the leader relays; waits for the lock unless it has stopped).
  var group = groupName();
  var role = group ? "follower" : "alone";
  var tabId = Math.random().toString(36).slice(2) + Date.now().toString(36);
  var channel = null, releaseLock = null, waiting = false, leaving = false;
  // The leader's: followers by tab id (when last heard), the hello and status of its
  // socket, and the announcements still awaiting confirmation (a tab that opens later is
  // shown them, as its own socket's replay would have done).
  var peers = {}, rollCallAt = 0, rollCallTimer = null;
  var leaderHello = null, leaderStatus = null, outstanding = {};
  // Emergencies: the titles of those this page showed (an all clear for one whose
  // overlay is gone still tells the person), and whether the live link is up (an answer
  // is only said to be sent when it could be).
  var emergencies = {}, liveState = null;
  var tabsSent = null, tabsTimer = null;

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
  // This tab's memory, read once: what any tab of this user had handled by then.
  function loadMemory() {
    if (memoryLoaded || userId == null) return;
    memoryLoaded = true;
    tabEpoch = store(key("epoch"));
    seen().forEach(function (id) { handled[id] = true; });
  }

  function emit(name, detail) {
    if (name === "status") liveState = detail.state;
    document.dispatchEvent(new CustomEvent("schoolbell:" + name, { detail: detail }));
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }
  // A follower's receipt goes to the leader, whose socket sends it.
  function ack(id, state) {
    if (role === "follower") share("ack", { id: id, state: state });
    else send({ type: "ack", id: id, state: state });
  }

  // Emergency roll call: "I'm safe" / "I need help" (docs/protocol.md, "Roll call"). A
  // follower's answer goes to the leader, like a receipt. False when it cannot go now.
  function sendAnswer(id, status, text) {
    var fields = { id: id, status: status, text: text || null };
    if (role === "follower") {
      if (liveState !== "online") return false;
      share("answer", fields);
      return true;
    }
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    send({ type: "answer", id: fields.id, status: fields.status, text: fields.text });
    return true;
  }

  // Connection ---------------------------------------------------------------------
  function connect() {
    clearTimeout(reconnectTimer);
    if (role === "follower") return;  // the leader's socket serves this tab
    var url = options.url;
    // A token rides along as a subprotocol: the socket is signed in before the handshake
    // completes (no `auth` round trip), and the token stays out of URLs and logs.
    socket = options.token
      ? new WebSocket(url, ["schoolbell", "schoolbell.jwt." + options.token])
      : new WebSocket(url);
    socket.onopen = function () { lastHeard = Date.now(); };
    socket.onmessage = onSocketMessage;
    socket.onclose = function (event) {
      clearInterval(pingTimer);
      socket = null;
      leaderHello = null;
      if (event.code === 1008) {  // refused by policy: retrying the same way cannot help
        stopped = true;
        var why = event.reason || _("not signed in");
        var text = _("Live announcements stopped: {reason}. Reload the page to try again.", { reason: why });
        banner(text);
        emit("status", { state: "stopped", reason: event.reason });
        if (role === "leader") {
          shareStatus("stopped", event.reason, text);
          // Another tab may get in where this one cannot (a newer token): let it try.
          abdicate();
        }
        return;
      }
      emit("status", { state: "offline", reason: event.reason });
      shareStatus("offline", event.reason, _("Reconnecting\u2026"));
      scheduleReconnect(event.code === 1001);
    };
  }

  function scheduleReconnect(serverRestarting) {
    if (stopped) return;
    banner(_("Reconnecting\u2026"));
    if (serverRestarting) restarting = true;
    // Full jitter: spread thousands of tabs over the window instead of a thundering herd.
    var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, attempt));
    if (restarting && attempt < RESTART_ATTEMPTS) ceiling = RESTART_MAX_MS;
    var delay = restarting ? 500 + Math.random() * (ceiling - 500) : Math.random() * ceiling;
    attempt += 1;
    reconnectTimer = setTimeout(connect, delay);
  }

  // A message on this tab's own socket. The leader relays an announcement before it says
  // "delivered" and remembers it: a leader that goes away in between has passed it on,
  // or (see resumeFrom) the next leader gets it again.
  function onSocketMessage(event) {
    lastHeard = Date.now();
    var message;
    try { message = JSON.parse(event.data); } catch (e) { return; }
    if (message.type === "error") { onError(message); return; }
    if (message.type === "pong") return;
    if (message.type === "hello") onHello(message);
    if (role === "leader") {
      share("server", { message: message });
      keepOutstanding(message);
    }
    if (message.type === "notification") onDelivered(message);
    handle(message);
  }

  // What every tab does with a server message, from its own socket or relayed.
  function handle(message) {
    if (message.type === "hello") onOnline(message);
    else if (message.type === "notification") onNotification(message);
    else if (message.type === "update") onUpdate(message);
    else if (message.type === "retract" || message.type === "expire") onGone(message);
    else if (message.type === "receipt") onReceipt(message);
    else if (message.type === "all_clear") onAllClear(message);
  }

  // The alerts this page shows, as [id, revision]: on resume the server says which of
  // them were edited, withdrawn or expired meanwhile.
  function openAlerts() {
    var found = [];
    document.querySelectorAll(".schoolbell-toast[data-notification-id]:not(.schoolbell-all-clear)").forEach(function (el) {
      if (found.length < 100) found.push([+el.dataset.notificationId, +el.dataset.revision || 1]);
    });
    return found;
  }

  // Edited: an alert this page shows is replaced where it is; one it no longer shows
  // comes back only when the sender asked everyone again (a material change).
  function onUpdate(message) {
    var id = message.id;
    if ((revisions[id] || 0) >= message.revision) return;
    var shown = document.getElementById("schoolbell-toast-" + id);
    if (!shown && !message.reconfirm) { revisions[id] = message.revision; return; }
    revisions[id] = message.revision;
    handled[id] = true;
    emit("update", message);
    if (!options.toasts) return;
    var fresh = message;
    var old = shown && shown.parentElement.classList.contains("schoolbell-overlay") ? shown.parentElement : shown;
    if (old && !old.classList.contains("schoolbell-overlay") && message.priority !== "emergency") {
      old.replaceWith(showToast(fresh));
      return;
    }
    if (old) old.remove();
    if (message.priority === "emergency") showOverlay(fresh);
    else showToast(fresh);
  }

  // Withdrawn or expired: gone from this page at once.
  function onGone(message) {
    removeToast(message.id);
    emit(message.type === "retract" ? "retract" : "expire", message);
  }

  function onError(message) {
    // A server older than the `tabs` message answers it with unknown_type and keeps the
    // socket open: it counts this socket as one tab, as it always did. Nothing to say.
    if (message.code === "unknown_type" && tabsSent !== null) return;
    if (window.console) console.warn("schoolbell:", message.code, message.message);
  }

  // The server's hello on this tab's own socket.
  function onHello(message) {
    userId = message.user.id;
    attempt = 0;
    restarting = false;
    // A new epoch means the database was reset: ids we hold mean nothing any more.
    if (store(key("epoch")) !== message.epoch) {
      store(key("epoch"), message.epoch);
      store(key("last"), "0");
      store(key("seen"), "[]");
      handled = {};
      outstanding = {};
    }
    adopt(message);
    if (role === "alone") seen().forEach(function (id) { handled[id] = true; });
    send({ type: "resume", last_id: role === "alone" ? lastId() : resumeFrom(), open: openAlerts() });
    if (role === "leader") {
      leaderHello = message;
      leaderStatus = null;
      tabsSent = null;
      reportTabs();
    }
    clearInterval(pingTimer);
    pingTimer = setInterval(function () {
      if (Date.now() - lastHeard > SILENCE_MS && socket) { socket.close(4000, "silent"); return; }
      send({ type: "ping" });
    }, PING_MS);
  }

  // A hello, on this tab's socket or relayed: whose tab this is, and which database.
  function adopt(message) {
    userId = message.user.id;
    useLanguage(message);
    loadMemory();
    if (tabEpoch !== message.epoch) {
      if (tabEpoch !== null) handled = {};
      tabEpoch = message.epoch;
    }
  }

  function onOnline(message) {
    adopt(message);
    banner(null);
    emit("status", { state: "online" });
  }

  // Where a leader resumes: the newest id any tab of this user has (the shared last id),
  // or just before the oldest one some leader remembered but this tab never got. That one
  // was being relayed when its leader went; replayed, it is shown here, and not
  // acknowledged again (it is in the shared list).
  function resumeFrom() {
    var from = lastId();
    seen().forEach(function (id) {
      if (!handled[id] && (from === null || id - 1 < from)) from = id - 1;
    });
    return from;
  }

  // An announcement on this tab's own socket: say "delivered" once. One socket per tab:
  // once per tab, as ever. Tabs sharing a socket: once per browser, by the shared list.
  function onDelivered(message) {
    if (role === "alone" ? handled[message.id] === true : seen().indexOf(message.id) >= 0) return;
    ack(message.id, "delivered");
    remember(message.id);
  }

  function onNotification(message) {
    var duplicate = handled[message.id] === true;
    handled[message.id] = true;
    // A newer revision of one this page shows (replayed after an edit): replace it.
    if (duplicate && message.revision > (revisions[message.id] || 1) &&
        document.getElementById("schoolbell-toast-" + message.id)) {
      onUpdate(message);
      return;
    }
    revisions[message.id] = Math.max(revisions[message.id] || 0, message.revision || 1);
    // Announcements that still need a confirmation come back until confirmed.
    if (duplicate && !message.require_ack) return;
    var open = document.getElementById("schoolbell-toast-" + message.id);
    if (open) {
      // A reminder to confirm an alert still on screen: bring it to the top again.
      if (message.reminder && open.parentElement && open.parentElement.id === "schoolbell-toasts") {
        open.parentElement.prepend(open);
      }
      return;
    }
    emit("notification", message);
    if (!options.toasts) return;
    if (message.priority === "emergency") showOverlay(message);
    else showToast(message);
    if (message.priority !== "normal" && document.hidden) systemNotification(message);
  }

  // Read or confirmed in another tab (or the inbox page): this tab lets it go too. Not
  // an emergency this tab answered the roll call in: that answer is the "read" (the
  // person may still change it), and only a confirmation or a close ends it here.
  function onReceipt(message) {
    var el = document.getElementById("schoolbell-toast-" + message.id);
    var keep = message.state === "read" && el &&
      (el.dataset.answered || el.classList.contains("schoolbell-all-clear"));
    if (!keep) removeToast(message.id);
    emit("receipt", message);
  }

  // One socket per browser ------------------------------------------------------------
  // Every message on the channel names its sender tab and its user (the user of the
  // leader's hello, or of the page): a tab acts only on its own user's. Groups are per
  // user already (groupName); this also keeps apart a page left open by someone who has
  // signed out, whose leader's socket, reconnecting with the new cookie, is another's.
  function share(kind, fields) {
    if (!channel) return;
    var data = {};
    Object.keys(fields || {}).forEach(function (name) { data[name] = fields[name]; });
    data.kind = kind;
    data.from = tabId;
    data.user = userId != null ? String(userId) : pageUserId;
    try { channel.postMessage(data); } catch (e) { /* closed while the page goes */ }
  }

  function joinGroup() {
    try { channel = new BroadcastChannel(group); } catch (e) { alone(); return; }
    channel.onmessage = onShared;
    if (pageUserId) { userId = pageUserId; loadMemory(); }
    share("join");
    waitForLock();
    window.addEventListener("pagehide", function () {
      leaving = true;
      share("bye");
      // Hand over now, not when the page is finally torn down: the next tab is waiting.
      if (role === "leader") {
        var s = socket;
        abdicate();
        if (s) { s.onclose = null; s.close(1000, "tab closed"); socket = null; }
      }
    });
    window.addEventListener("pageshow", function (event) {
      if (!event.persisted) return;  // back from the back/forward cache: join again
      leaving = false;
      share("join");
      if (!stopped) waitForLock();
    });
  }

  // Locks refused (an opaque origin, say): one socket per tab after all.
  function alone() {
    if (channel) { channel.close(); channel = null; }
    role = "alone";
    connect();
  }

  function waitForLock() {
    if (waiting || role === "leader") return;
    waiting = true;
    navigator.locks.request(group, lead).catch(function () {
      waiting = false;
      if (role === "follower" && !leaving) alone();
    });
  }

  // Holding the lock: connect, resume, relay. The lock is held until the promise
  // settles: when this page goes, or its socket is refused.
  function lead() {
    waiting = false;
    if (leaving || stopped) return Promise.resolve();
    role = "leader";
    var now = Date.now();
    Object.keys(peers).forEach(function (id) { if (now - peers[id] > FORGET_MS) delete peers[id]; });
    rollCallAt = now;
    share("leader");  // followers answer, so it knows whom it serves
    rollCallTimer = setInterval(rollCall, ROLL_CALL_MS);
    attempt = 0;
    connect();
    return new Promise(function (resolve) { releaseLock = resolve; });
  }

  function abdicate() {
    role = "follower";
    clearInterval(rollCallTimer);
    clearTimeout(tabsTimer);
    clearTimeout(reconnectTimer);
    clearInterval(pingTimer);
    leaderHello = null;
    outstanding = {};
    if (releaseLock) { releaseLock(); releaseLock = null; }
  }

  // A follower answers each roll call at once, from the message event: a background tab's
  // own timers may be throttled to once a minute, its events are not. So a follower
  // is gone when it did not answer the last roll call and has been silent for 10 s.
  function rollCall() {
    var now = Date.now(), changed = false;
    Object.keys(peers).forEach(function (id) {
      if (peers[id] < rollCallAt && now - peers[id] > FORGET_MS) { delete peers[id]; changed = true; }
    });
    rollCallAt = now;
    share("leader");
    if (changed) tabsChanged();
  }

  function tabsChanged() {
    if (role === "leader" && !tabsTimer) tabsTimer = setTimeout(reportTabs, 100);  // a burst of tabs: one message
  }

  // Presence counts tabs: the leader says how many it serves, itself included.
  function reportTabs() {
    clearTimeout(tabsTimer);
    tabsTimer = null;
    if (role !== "leader" || !leaderHello) return;
    var count = Math.min(MAX_TABS, 1 + Object.keys(peers).length);
    if (count === tabsSent) return;
    tabsSent = count;
    send({ type: "tabs", count: count });
  }

  function keepOutstanding(message) {
    if ((message.type === "notification" || message.type === "update") && message.require_ack) {
      outstanding[message.id] = message;
      var ids = Object.keys(outstanding);
      if (ids.length > OUTSTANDING_LIMIT) delete outstanding[ids[0]];
    } else if (message.type === "retract" || message.type === "expire" || message.type === "all_clear" ||
               (message.type === "receipt" && message.state === "acknowledged")) {
      delete outstanding[message.id];
    }
  }

  // A tab that just opened: what it would have got from a socket of its own.
  function welcome(to) {
    var now = Date.now();
    share("welcome", {
      to: to,
      hello: leaderHello,
      status: leaderHello ? null : leaderStatus,
      outstanding: Object.keys(outstanding).map(function (id) { return outstanding[id]; })
        .filter(function (m) { return !m.expires_at || new Date(m.expires_at).getTime() > now; })
    });
  }

  function onShared(event) {
    var data = event.data || {};
    var me = userId != null ? String(userId) : pageUserId;
    if (data.user && me && data.user !== me) return;
    if (data.to && data.to !== tabId) return;
    if (data.kind === "join" || data.kind === "beat") {
      var known = data.from in peers;
      peers[data.from] = Date.now();
      if (role === "leader" && data.kind === "join") welcome(data.from);
      if (!known) tabsChanged();
    } else if (data.kind === "bye") {
      if (data.from in peers) { delete peers[data.from]; tabsChanged(); }
    } else if (data.kind === "leader") {
      delete peers[data.from];  // a leader is not one of the followers
      if (role !== "leader" && !leaving) share("beat");
    } else if (data.kind === "ack") {
      if (role === "leader") send({ type: "ack", id: data.id, state: data.state });
    } else if (data.kind === "answer") {
      if (role === "leader") send({ type: "answer", id: data.id, status: data.status, text: data.text });
    } else if (role !== "leader") {
      if (data.kind === "server") handle(data.message);
      else if (data.kind === "status") followStatus(data);
      else if (data.kind === "welcome") {
        if (data.hello) handle(data.hello);
        else if (data.status) followStatus(data.status);
        data.outstanding.forEach(handle);
      }
    }
  }

  // The leader's socket went offline or was refused: its followers say so too.
  function shareStatus(state, reason, text) {
    if (role !== "leader") return;
    leaderStatus = { state: state, reason: reason, text: text };
    share("status", leaderStatus);
  }
  function followStatus(status) {
    banner(status.text);
    emit("status", { state: status.state, reason: status.reason });
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
      el.setAttribute("aria-label", _("Announcements"));
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
      el.dataset.revision = message.revision || 1;
    }
    if (message.drill) el.appendChild(drillLabel());
    var title = document.createElement("h2");
    title.className = "schoolbell-title";
    title.textContent = message.title;  // plain text, never markup
    var body = document.createElement("div");
    body.className = "schoolbell-body";
    body.innerHTML = message.body_html;  // sanitised by the server (nh3), same as the inbox
    var meta = document.createElement("p");
    meta.className = "schoolbell-meta";
    meta.textContent = (message.author ? message.author + " \u00b7 " : "") +
      (message.created_at ? when(message.created_at) : _("now")) +
      (message.edited_at ? " \u00b7 " + _("edited") : "");
    el.append(title, body, meta);
    if (message.link) {
      var a = document.createElement("a");
      a.href = message.link;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      a.textContent = _("Open link");
      el.appendChild(a);
    }
    if (message.priority === "emergency") el.appendChild(answerBox(message, el, opts));
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
    if (message.require_ack) answer(_("Confirm"), "schoolbell-confirm", "acknowledged");
    if (!message.require_ack || message.priority !== "emergency") {
      answer(message.require_ack ? _("Later") : _("Dismiss"), "schoolbell-dismiss", "read");
    }
    el.appendChild(row);
    return el;
  }

  // Emergencies ---------------------------------------------------------------------
  // "DRILL" on every alert of a drill: toast, overlay, preview and all clear alike.
  function drillLabel() {
    var p = document.createElement("p");
    p.className = "schoolbell-drill";
    var strong = document.createElement("strong");
    strong.textContent = _("DRILL");
    p.append(strong, document.createTextNode(" " + _("This is an exercise, not a real emergency.")));
    return p;
  }

  // The roll call of an emergency alert (part of renderAlert, so the preview shows it,
  // disabled): two answers and an optional note; the last answer counts and can be
  // changed; it also counts as reading the alert.
  var ANSWERS = [
    ["safe", N_("I'm safe"), N_("Sent: you are safe. You can change your answer.")],
    ["help", N_("I need help"), N_("Sent: staff can see that you need help. Add where you are, or change your answer.")]
  ];
  function answerBox(message, alertEl, opts) {
    var box = document.createElement("div");
    box.className = "schoolbell-roll-call";
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", _("Roll call"));
    var question = document.createElement("p");
    question.className = "schoolbell-roll-call-question";
    question.textContent = _("Let staff know how you are:");
    var buttons = document.createElement("div");
    buttons.className = "schoolbell-roll-call-answers";
    var note = document.createElement("label");
    note.className = "schoolbell-roll-call-note";
    var input = document.createElement("input");
    input.type = "text";
    input.maxLength = 280;
    input.autocomplete = "off";
    note.append(document.createTextNode(_("Note for staff (optional)")), input);
    var status = document.createElement("p");
    status.className = "schoolbell-roll-call-status";
    status.setAttribute("role", "status");
    ANSWERS.forEach(function (answer) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "schoolbell-answer schoolbell-answer-" + answer[0];
      b.textContent = _(answer[1]);
      b.setAttribute("aria-pressed", "false");
      if (opts.preview) { b.disabled = true; input.disabled = true; }
      else b.addEventListener("click", function () {
        if (!sendAnswer(message.id, answer[0], input.value.trim().slice(0, 280))) {
          status.textContent = _("Not sent: you are offline. Try again in a moment.");
          return;
        }
        alertEl.dataset.answered = answer[0];
        buttons.querySelectorAll("button").forEach(function (other) {
          other.setAttribute("aria-pressed", String(other === b));
        });
        status.textContent = _(answer[2]);
      });
      buttons.appendChild(b);
    });
    box.append(question, buttons, note, status);
    return box;
  }

  // The end of an emergency: the one definition of its markup, for the overlay it
  // replaces and for the small toast of a tab whose overlay is gone already.
  function renderAllClear(message, title, onClose) {
    var el = document.createElement("section");
    el.className = "schoolbell-toast schoolbell-all-clear";
    el.id = "schoolbell-toast-" + message.id;
    el.dataset.notificationId = message.id;
    if (message.drill) el.appendChild(drillLabel());
    var heading = document.createElement("h2");
    heading.className = "schoolbell-title";
    heading.id = el.id + "-title";
    heading.textContent = _("All clear");
    el.appendChild(heading);
    if (title) {
      var of = document.createElement("p");
      of.className = "schoolbell-all-clear-of";
      of.textContent = _("Over: {title}", { title: title });
      el.appendChild(of);
    }
    var text = document.createElement("p");
    text.className = "schoolbell-all-clear-message";
    text.textContent = message.message || "";  // plain text (services/emergencies.py)
    var row = document.createElement("div");
    row.className = "schoolbell-actions";
    var close = document.createElement("button");
    close.type = "button";
    close.className = "schoolbell-confirm";
    close.textContent = _("Close");
    close.addEventListener("click", onClose);
    row.appendChild(close);
    el.append(text, row);
    return el;
  }

  // An emergency is over. Its open overlay turns into the all-clear message (focus on
  // its Close button); a tab that showed it but whose overlay is gone (confirmed or
  // dismissed) gets a small toast; a tab that never showed it shows nothing.
  function onAllClear(message) {
    var el = document.getElementById("schoolbell-toast-" + message.id);
    var overlay = el && el.parentElement.classList.contains("schoolbell-overlay") ? el.parentElement : null;
    var title = emergencies[message.id];
    delete emergencies[message.id];
    emit("all_clear", message);
    if (!options.toasts || (!el && title === undefined)) return;
    if (el && !overlay) el.remove();
    if (overlay) {
      var calm = renderAllClear(message, title, function () {
        ack(message.id, "read");
        closeOverlay(overlay);
      });
      calm.setAttribute("role", "alertdialog");
      calm.setAttribute("aria-modal", "true");
      calm.setAttribute("aria-labelledby", calm.id + "-title");
      overlay.classList.add("schoolbell-overlay-calm");
      overlay.replaceChild(calm, el);
      calm.querySelector("button").focus();
      return;
    }
    var toast = renderAllClear(message, title, function () { toast.remove(); });
    toast.setAttribute("role", "status");
    region().prepend(toast);
  }

  function closeOverlay(overlay) {
    var previous = overlay.schoolbellPrevious;
    overlay.remove();
    if (previous && previous.focus && document.contains(previous)) previous.focus();
  }

  function showToast(message) {
    var el = renderAlert(message, { onDone: function () { el.remove(); } });
    el.setAttribute("role", message.priority === "urgent" ? "alert" : "status");
    el.tabIndex = -1;
    el.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && !message.require_ack) { ack(message.id, "read"); el.remove(); }
    });
    region().prepend(el);
    return el;
  }

  function showOverlay(message) {
    ensureStyles();
    var overlay = document.createElement("div");
    overlay.className = "schoolbell-overlay";
    overlay.schoolbellPrevious = document.activeElement;
    emergencies[message.id] = message.title;
    var el = renderAlert(message, { onDone: function () { closeOverlay(overlay); } });
    el.setAttribute("role", "alertdialog");
    el.setAttribute("aria-modal", "true");
    el.setAttribute("aria-labelledby", el.id + "-title");
    el.querySelector("h2").id = el.id + "-title";
    overlay.appendChild(el);
    document.body.appendChild(overlay);
    // The alert's own buttons (Confirm / Dismiss), not "I'm safe": a stray Enter must
    // not answer the roll call.
    var first = el.querySelector(".schoolbell-actions button") || el.querySelector("button");
    if (first) first.focus();
    return overlay;
  }

  // While an overlay is up it is modal: Tab and Shift+Tab cycle through its own controls.
  function trapFocus(e) {
    if (e.key !== "Tab") return;
    var overlays = document.querySelectorAll(".schoolbell-overlay");
    if (!overlays.length) return;
    var items = Array.prototype.slice.call(
      overlays[overlays.length - 1].querySelectorAll("a[href], button, input"));
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

  window.Schoolbell = {
    ack: ack, askPermission: askPermission, renderAlert: renderAlert, options: options, t: _
  };
  document.addEventListener("keydown", trapFocus);
  document.addEventListener("click", function (e) {
    if (e.target.closest && e.target.closest("[data-schoolbell-ask-permission]")) askPermission();
  });

  function start() {
    if (role === "alone") connect();
    else joinGroup();
  }
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
