/*
 * "Alerts on this device": Web Push for the component templates/_push_button.html
 * (#push-device), which loads this file. Plain JavaScript, no inline handlers (CSP).
 *
 * On load it registers the service worker (/sw.js; that asks nothing) and says, in words,
 * where this device stands: on, off, blocked, unsupported, or (iPhone and iPad) not yet
 * installed, which iOS requires before it allows push. It asks for permission only when
 * the button is clicked, then subscribes with the server's key (GET /api/v1/push/key)
 * and hands the subscription to the server (POST /api/v1/push/subscriptions, with the
 * page's CSRF token). A subscription the browser already has is sent again on every
 * visit, quietly: the server answers 200 when it knows it, and learns of a renewed one.
 * "Turn off" unsubscribes and tells the server (DELETE). Failures are shown in the
 * component in plain words.
 */
(function () {
  "use strict";

  var root = document.getElementById("push-device");
  if (!root) return;
  var statusText = root.querySelector("[data-push-status]");
  var errorText = root.querySelector("[data-push-error]");
  var button = root.querySelector("[data-push-toggle]");
  var scope = new URL(root.dataset.scope, location.href).href;
  var api = new URL("api/v1/push/", scope).href;
  var SUBSCRIBE_TIMEOUT_MS = 20000;

  // The page's language, from schoolbell.js (loaded first on every signed-in page);
  // English without it. N_ only marks a string for the catalogue (webapp/translations).
  function _(text, values) {
    if (window.Schoolbell && window.Schoolbell.t) return window.Schoolbell.t(text, values);
    return text.replace(/\{(\w+)\}/g, function (all, name) { return values && name in values ? values[name] : all; });
  }
  function N_(text) { return text; }

  var STATES = {
    checking: N_("Checking this browser\u2026"),
    on: N_("On for this device"),
    off: N_("Off"),
    blocked: N_("Blocked in this browser: allow notifications for this site in the browser's settings"),
    unsupported: N_("Not supported in this browser"),
    insecure: N_("Not available: this page was not loaded over HTTPS, which alerts on devices need"),
    install: N_("Install Schoolbell first: Share, then Add to Home Screen"),
    broken: N_("Not available in this browser right now"),
    asking: N_("Waiting for your answer to the browser's question\u2026"),
    subscribing: N_("Turning on\u2026"),
    unsubscribing: N_("Turning off\u2026")
  };
  var BUTTONS = { on: N_("Turn off"), off: N_("Get alerts on this device") };

  var registration = null;  // a promise of the active service worker's registration
  var busy = false;  // a click's work is under way

  // Presentation -------------------------------------------------------------------
  function show(state, problem) {
    busy = false;
    root.dataset.state = state;
    statusText.textContent = _(STATES[state]);
    errorText.textContent = problem || "";
    errorText.hidden = !problem;
    button.hidden = !BUTTONS[state];
    button.disabled = false;
    if (BUTTONS[state]) button.textContent = _(BUTTONS[state]);
  }

  function working(state) {
    busy = true;
    root.dataset.state = state;
    statusText.textContent = _(STATES[state]);
    errorText.hidden = true;
    button.disabled = true;
  }

  // An error whose message is meant for the person in front of the screen.
  function plain(message) {
    var error = new Error(message);
    error.plain = true;
    return error;
  }
  function describe(error) {
    return error && error.plain ? error.message : _("Something went wrong: {error}", { error: error && error.message || error });
  }

  // The browser ----------------------------------------------------------------------
  function onApple() {
    return /iPad|iPhone|iPod/.test(navigator.userAgent) ||
      (navigator.platform === "MacIntel" && navigator.maxTouchPoints > 1);  // iPadOS says "Mac"
  }
  function installed() {
    return navigator.standalone === true || window.matchMedia("(display-mode: standalone)").matches;
  }
  function supported() {
    return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
  }

  function askPermission() {
    // Safari before 15 takes a callback and returns nothing; the others return a promise.
    return new Promise(function (resolve) {
      var answer = Notification.requestPermission(resolve);
      if (answer && answer.then) answer.then(resolve);
    });
  }

  function keyBytes(base64url) {
    var base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    return Uint8Array.from(binary, function (c) { return c.charCodeAt(0); });
  }

  function withTimeout(promise, ms, message) {
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () { reject(plain(message)); }, ms);
      promise.then(
        function (value) { clearTimeout(timer); resolve(value); },
        function (error) { clearTimeout(timer); reject(error); }
      );
    });
  }

  // The server -----------------------------------------------------------------------
  function call(method, path, body) {
    var headers = { "Accept": "application/json", "X-CSRFToken": root.dataset.csrfToken };
    if (body) headers["Content-Type"] = "application/json";
    return fetch(api + path, {
      method: method,
      headers: headers,
      credentials: "same-origin",
      body: body ? JSON.stringify(body) : undefined
    }).then(function (response) {
      if (response.ok) return response.status === 204 ? null : response.json();
      return response.json().catch(function () { return null; }).then(function (answer) {
        var message = answer && answer.error && answer.error.message;
        if (message) throw plain(_("The server refused: {message}", { message: message }));
        throw plain(_("The server refused (error {status}).", { status: response.status }));
      });
    }, function () {
      throw plain(_("Could not reach Schoolbell: are you offline? Try again when connected."));
    });
  }

  function save(subscription) { return call("POST", "subscriptions", subscription.toJSON()); }

  function subscribe() {
    return Promise.all([registration, call("GET", "key")]).then(function (results) {
      var subscribing = results[0].pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: keyBytes(results[1].public_key)
      }).catch(function (error) {
        throw plain(_("This browser's push service refused ({error}). Try again later.", { error: error.message }));
      });
      return withTimeout(subscribing, SUBSCRIBE_TIMEOUT_MS,
        _("This browser's push service did not answer. Try again later."));
    });
  }

  // Actions --------------------------------------------------------------------------
  function turnOn() {
    working("asking");
    askPermission().then(function (permission) {
      if (permission === "denied") return show("blocked");
      if (permission !== "granted") {
        return show("off", _("The browser's question was closed without an answer. Click again to be asked again."));
      }
      working("subscribing");
      return subscribe().then(function (subscription) {
        return save(subscription).then(function () { show("on"); }, function (error) {
          subscription.unsubscribe();  // the server does not know it: leave nothing half on
          throw error;
        });
      });
    }).catch(function (error) { show("off", describe(error)); });
  }

  function turnOff() {
    working("unsubscribing");
    registration.then(function (reg) { return reg.pushManager.getSubscription(); })
      .then(function (subscription) {
        if (!subscription) return show("off");
        var endpoint = subscription.endpoint;
        return subscription.unsubscribe().then(function () {
          return call("DELETE", "subscriptions", { endpoint: endpoint }).then(function () {
            show("off");
          }, function (error) {
            // The device is off; the server drops it when its push service says it is gone.
            show("off", _("Off here, but the server was not told.") + " " + describe(error));
          });
        });
      })
      .catch(function (error) { show("on", describe(error)); });
  }

  // Where this device stands, from what the browser says now.
  function refresh() {
    return registration
      .then(function (reg) { return reg.pushManager.getSubscription(); })
      .then(function (subscription) {
        if (Notification.permission === "denied") return show("blocked");
        if (!subscription) return show("off");
        show("on");
        return save(subscription).catch(function (error) {
          show("on", _("The server could not be updated.") + " " + describe(error));
        });
      });
  }

  function start() {
    if (!window.isSecureContext) return show("insecure");
    // iOS offers push only to a web app on the home screen (not in a Safari tab).
    if (onApple() && !installed() && !("PushManager" in window)) return show("install");
    if (!supported()) return show("unsupported");
    registration = navigator.serviceWorker
      .register(root.dataset.worker, { scope: scope })
      .then(function () { return navigator.serviceWorker.ready; });
    registration.catch(function () { /* shown by refresh() */ });
    refresh().catch(function (error) { show("broken", describe(error)); });
    // Unblocked or blocked in the browser's settings while the page is open.
    if (navigator.permissions) {
      navigator.permissions.query({ name: "notifications" }).then(function (status) {
        status.onchange = function () { if (!busy) refresh().catch(function () {}); };
      }, function () { /* this browser cannot watch the permission */ });
    }
  }

  button.addEventListener("click", function () {
    if (root.dataset.state === "on") turnOff();
    else turnOn();
  });
  start();
})();
