/*
 * Schoolbell's service worker, served at /sw.js (scope: the whole app) and registered by
 * static/js/push.js. It does Web Push only: no caching, no offline pages.
 *
 * push: always shows a notification (browsers penalise pushes that show nothing), one per
 *   announcement (its tag is the announcement's id, so a later push for the same one
 *   replaces it), then reports `delivered` with the push's signed receipt token.
 * notificationclick: reports `read`, then brings a Schoolbell window to the announcement
 *   (or opens one).
 * pushsubscriptionchange: subscribes again with the server's key and tells the server,
 *   as far as it can without a CSRF token; the page re-sends its subscription on the next
 *   visit anyway (push.js).
 *
 * The payload (built by webapp/services/push.py): {type: "notification", id, title,
 * body (plain text), priority, require_ack, url, tag, receipt, created_at, drill, prefix,
 * drill_prefix}; `prefix` and `drill_prefix` are the title's prefixes in the recipient's
 * language (this file's English ones serve payloads without them); an edit or a
 * reminder sends the same under the same tag; a withdrawal ("retract") and an all-clear
 * ("all_clear") too, with no receipt.
 * Every browser with service workers runs async functions, so this file uses them.
 */
"use strict";

var SCOPE = self.registration.scope;  // ".../": the app's root, behind any path prefix
var ICON = at("static/icons/icon-192.png");
var BADGE = at("static/icons/badge-96.png");
var TITLE_PREFIX = { urgent: "Urgent: ", emergency: "EMERGENCY: " };
var DRILL_PREFIX = "DRILL: ";
// "notification" (new, edited or a reminder); "retract" and "all_clear" replace what the
// device shows under the same tag, and report nothing.
var PAYLOAD_TYPES = ["notification", "retract", "all_clear"];
var RECEIPT_TIMEOUT_MS = 5000, RETRY_AFTER_MS = 1000;

function at(path) { return new URL(path, SCOPE).href; }

// Only a page of this app may be opened from a notification.
function appUrl(url) {
  try {
    var resolved = new URL(url, SCOPE);
    if (resolved.href.indexOf(SCOPE) === 0) return resolved.href;
  } catch (e) { /* not a URL: the inbox */ }
  return at("inbox");
}

function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

self.addEventListener("install", function (event) {
  event.waitUntil(self.skipWaiting());  // a new version takes over at once
});

self.addEventListener("activate", function (event) {
  event.waitUntil(self.clients.claim());  // and controls the pages already open
});

// Push -------------------------------------------------------------------------------
self.addEventListener("push", function (event) {
  event.waitUntil(onPush(event.data));
});

async function onPush(data) {
  var payload = readPayload(data);
  var shown = notificationFor(payload);
  try {
    await self.registration.showNotification(shown.title, shown.options);
  } catch (e) {
    return;  // permission withdrawn meanwhile: nothing reached the person, so no receipt
  }
  if (shown.options.data.receipt) await sendReceipt(shown.options.data.receipt, "delivered");
}

function readPayload(data) {
  if (!data) return null;
  try {
    var payload = data.json();
    return payload && typeof payload === "object" && PAYLOAD_TYPES.indexOf(payload.type) >= 0 ? payload : null;
  } catch (e) {
    return null;  // not JSON
  }
}

// What to show for a payload; anything unreadable still says that something arrived.
function notificationFor(payload) {
  if (!payload) {
    return {
      title: "New announcement",
      options: { body: "Open Schoolbell to read it.", icon: ICON, badge: BADGE, data: { url: at("inbox") } }
    };
  }
  var options = {
    body: typeof payload.body === "string" ? payload.body : "",
    icon: ICON,
    badge: BADGE,
    requireInteraction: payload.type === "notification" && payload.priority === "emergency",  // stays until dealt with
    timestamp: Date.parse(payload.created_at) || Date.now(),
    data: { url: appUrl(payload.url), id: payload.id, receipt: payload.receipt }
  };
  if (payload.tag != null && payload.tag !== "") {
    options.tag = String(payload.tag);
    options.renotify = true;  // a replacement (an edit, a reminder) alerts again
  }
  var priorityPrefix = typeof payload.prefix === "string" ? payload.prefix : TITLE_PREFIX[payload.priority] || "";
  var prefix = payload.type === "notification" ? priorityPrefix : "";
  var drillPrefix = typeof payload.drill_prefix === "string" ? payload.drill_prefix : DRILL_PREFIX;
  var text = payload.title || "New announcement";
  // A drill's title starts with "DRILL: " (push.py): keep that first, before "EMERGENCY: ".
  if (payload.drill === true && drillPrefix && text.indexOf(drillPrefix) === 0) {
    prefix = drillPrefix + prefix;
    text = text.slice(drillPrefix.length);
  }
  var title = prefix + text;
  return { title: title, options: options };
}

// POST a receipt with the push's token; one retry after a network error. A refusal (an
// expired token, say) is final. Never throws: a rejected waitUntil helps nobody.
async function sendReceipt(token, state) {
  for (var attempt = 0; attempt < 2; attempt += 1) {
    if (attempt) await sleep(RETRY_AFTER_MS);
    try {
      var response = await fetch(at("api/v1/push/receipts"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: token, state: state }),
        credentials: "omit",  // the token is the authentication
        signal: AbortSignal.timeout ? AbortSignal.timeout(RECEIPT_TIMEOUT_MS) : undefined
      });
      return response.ok;
    } catch (e) { /* offline or timed out: try once more */ }
  }
  return false;
}

// Click --------------------------------------------------------------------------------
self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  event.waitUntil(openAnnouncement(event.notification.data || {}));
});

// Report `read` and show the announcement in the Schoolbell window the person was using
// (focused, else visible, else any), or in a new one. Focusing and opening a window are
// allowed only shortly after the click (in Firefox, about a second), so they come first; a
// window already open is navigated once the receipt is in, so it shows "read".
async function openAnnouncement(data) {
  var url = appUrl(data.url);
  var reported = data.receipt ? sendReceipt(data.receipt, "read") : Promise.resolve(false);
  var windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  windows.sort(function (a, b) { return rank(b) - rank(a); });
  var win = windows[0];
  if (win) {
    try { win = (await win.focus()) || win; } catch (e) { /* not allowed: no click */ }
    await reported;
    try {
      if (await win.navigate(url)) return;
    } catch (e) { /* a window this worker does not control (yet): open a new one */ }
  }
  try { await self.clients.openWindow(url); } catch (e) { /* not allowed: no click */ }
  await reported;  // a page opened meanwhile hears of it over its socket
}

function rank(client) {
  return client.focused ? 2 : client.visibilityState === "visible" ? 1 : 0;
}

// Subscription renewed by the browser ----------------------------------------------------
self.addEventListener("pushsubscriptionchange", function (event) {
  event.waitUntil(renewSubscription(event.oldSubscription, event.newSubscription));
});

async function renewSubscription(oldSubscription, newSubscription) {
  try {
    var subscription = newSubscription;
    if (!subscription) {
      subscription = await self.registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: await serverKey(oldSubscription)
      });
    }
    // Without the page's CSRF token the server may refuse this; the next visit re-sends.
    await fetch(at("api/v1/push/subscriptions"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(subscription.toJSON()),
      credentials: "same-origin"
    });
  } catch (e) { /* best effort */ }
}

// The server's VAPID public key; the old subscription's copy if the server cannot say.
async function serverKey(oldSubscription) {
  try {
    var response = await fetch(at("api/v1/push/key"), { credentials: "same-origin" });
    if (response.ok) return keyBytes((await response.json()).public_key);
  } catch (e) { /* offline */ }
  if (oldSubscription && oldSubscription.options) return oldSubscription.options.applicationServerKey;
  throw new Error("no application server key");
}

function keyBytes(base64url) {
  var base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
  var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
  return Uint8Array.from(binary, function (c) { return c.charCodeAt(0); });
}
