"""Web Push on a device, in a real Chromium against a real gunicorn server: the service
worker and the manifest, a push shown as a notification with its receipts recorded, and the
"Alerts on this device" component in each state a browser can really be in.

No push service is reachable from here, so pushes are delivered the way DevTools does it
(`ServiceWorker.deliverPushMessage`), with the payload the server encrypts (the contract in
webapp/services/push.py). `pushManager.subscribe()` cannot succeed: Chromium refuses it in
incognito profiles (Playwright's contexts are), and in a normal profile it waits for a push
service that never answers; so a subscription is never present here, and the "On" state,
the quiet re-send and "Turn off" are not exercised in a browser.
"""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from urllib.parse import urljoin

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, Route, expect
from sqlalchemy import select

from webapp.db import session_scope
from webapp.models import Delivery
from webapp.services.push import receipt_token

from .browser import WS_CONNECT_FAILED, sign_in, watch_console
from .conftest import CHROMIUM, CHROMIUM_ARGS, TEST_SECRETS
from .helpers import wait_for

pytestmark = pytest.mark.browser

STUDENT = "s7b_1"
OFF = "Off"
BLOCKED = "Blocked in this browser: allow notifications for this site in the browser's settings"
# Chromium's own console error when an incognito page subscribes.
INCOGNITO = "Chrome currently does not support the Push API in incognito mode"
# The notifications the worker has shown, as the page sees them.
NOTIFICATIONS = """navigator.serviceWorker.ready
  .then(r => r.getNotifications())
  .then(ns => ns.map(n => ({title: n.title, body: n.body, tag: n.tag, renotify: n.renotify,
                            requireInteraction: n.requireInteraction, data: n.data})))"""


class DevicePush:
    """Delivers pushes to this page's service worker through DevTools, as the browser
    does with what its push service hands it."""

    def __init__(self, context: BrowserContext, page: Page, origin: str):
        self.origin = origin
        self.registrations: dict[str, str] = {}  # scope -> registration id
        self.cdp = context.new_cdp_session(page)
        self.cdp.on("ServiceWorker.workerRegistrationUpdated", self._updated)
        self.cdp.send("ServiceWorker.enable")

    def _updated(self, event: dict) -> None:
        for registration in event["registrations"]:
            if not registration["isDeleted"]:
                self.registrations[registration["scopeURL"]] = registration["registrationId"]

    def deliver(self, data: str | None) -> None:
        """Hand the worker one push (its decrypted data, or none)."""
        params = {"origin": self.origin, "registrationId": self.registrations[self.origin + "/"]}
        self.cdp.send("ServiceWorker.deliverPushMessage", {**params, "data": data or ""})


def payload(nid: int, user_id: int, title: str, body: str, priority: str = "normal") -> str:
    """The push's JSON, as the server builds it, with a real receipt token."""
    return json.dumps(
        {
            "type": "notification",
            "id": nid,
            "title": title,
            "body": body,
            "priority": priority,
            "require_ack": priority == "emergency",
            "url": f"/inbox?open={nid}",
            "tag": str(nid),
            "receipt": receipt_token(TEST_SECRETS["SECRET_KEY"], user_id, nid),
            "created_at": datetime.now(UTC).isoformat(),
        }
    )


def delivery(app, user_id: int, nid: int) -> Delivery:
    """The delivery row of one announcement to one person, read afresh."""
    with app.app_context(), session_scope(app) as session:
        row = session.scalar(
            select(Delivery).where(Delivery.user_id == user_id, Delivery.notification_id == nid)
        )
        session.expunge(row)
        return row


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def open_inbox(page: Page, url: str, email: str) -> None:
    """Sign in, open the inbox, wait until its worker is active, then open the inbox again:
    a page that was loading while the worker activated may stay uncontrolled."""
    sign_in(page, url, email)
    page.goto(url + "/inbox")
    page.evaluate("navigator.serviceWorker.ready.then(() => null)")
    page.goto(url + "/inbox")
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")


def status(page: Page):
    return page.locator("#push-device [data-push-status]")


def test_the_worker_covers_the_whole_app_and_the_manifest_makes_it_installable(
    page: Page, live_school, console_errors
):
    url, school = live_school.server.url, live_school.school
    open_inbox(page, url, school.emails[STUDENT])
    assert page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)") == url + "/"
    expect(status(page)).to_have_text(OFF)  # nothing asked yet
    expect(page.get_by_role("button", name="Get alerts on this device")).to_be_visible()
    expect(page.get_by_role("link", name="Manage devices")).to_have_attribute("href", "/settings")

    worker = page.request.get(url + "/sw.js")
    assert worker.headers["content-type"] == "text/javascript; charset=utf-8"
    assert worker.headers["cache-control"] == "no-cache"
    assert worker.headers["service-worker-allowed"] == "/"

    href = page.locator('link[rel="manifest"]').get_attribute("href")
    response = page.request.get(urljoin(url, href))
    assert response.headers["content-type"] == "application/manifest+json"
    manifest = response.json()
    assert (manifest["start_url"], manifest["scope"], manifest["display"]) == (
        "/inbox",
        "/",
        "standalone",
    )
    theme = page.locator('meta[name="theme-color"]').get_attribute("content")
    assert manifest["theme_color"] == theme
    # Chromium's own reading of it: no errors, and nothing stops installing the app but
    # Playwright's profile being an incognito one.
    cdp = page.context.new_cdp_session(page)
    read = cdp.send("Page.getAppManifest")
    assert (read["url"], read["errors"]) == (urljoin(url, href), [])
    assert (read["manifest"]["startUrl"], read["manifest"]["display"]) == (
        url + "/inbox",
        "kStandalone",
    )
    installable = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    assert [error["errorId"] for error in installable] == ["in-incognito"]

    icons = {(icon["sizes"], icon["purpose"]): icon for icon in manifest["icons"]}
    assert set(icons) >= {
        ("192x192", "any"),
        ("512x512", "any"),
        ("512x512", "maskable"),
        ("any", "any"),
    }
    touch = page.locator('link[rel="apple-touch-icon"]').get_attribute("href")
    files = [(icon["src"], icon["type"], icon["sizes"]) for icon in manifest["icons"]]
    for src, kind, sizes in [*files, (touch, "image/png", "180x180")]:
        image = page.request.get(urljoin(url, src))
        assert image.ok and image.headers["content-type"].split(";")[0] == kind, src
        if kind == "image/png":
            assert "x".join(map(str, png_size(image.body()))) == sizes, src
    assert console_errors == []


def test_a_push_shows_the_announcement_and_reports_it_delivered(
    page: Page, context: BrowserContext, app, live_school, console_errors
):
    url, school = live_school.server.url, live_school.school
    student = school.ids[STUDENT]
    context.grant_permissions(["notifications"], origin=url)
    push = DevicePush(context, page, url)
    open_inbox(page, url, school.emails[STUDENT])
    page.goto("about:blank")  # the tab is closed: only a push can reach this device now

    sent = live_school.api.send(
        "Bus delayed",
        "The 7:40 bus is 20 minutes late.",
        targets={"users": [school.emails[STUDENT]]},
    )
    nid = sent["id"]
    assert delivery(app, student, nid).state.value == "pending"
    push.deliver(payload(nid, student, "Bus delayed", "The 7:40 bus is 20 minutes late."))

    reached = wait_for(
        lambda: delivery(app, student, nid).delivered_at and delivery(app, student, nid)
    )
    assert (reached.state.value, reached.channel.value) == ("delivered", "push")
    page.goto(url + "/inbox")
    shown = page.evaluate(NOTIFICATIONS)
    assert [(n["title"], n["body"], n["tag"], n["requireInteraction"]) for n in shown] == [
        ("Bus delayed", "The 7:40 bus is 20 minutes late.", str(nid), False)
    ]
    assert shown[0]["data"]["url"] == f"{url}/inbox?open={nid}"
    assert console_errors == []


def test_an_emergency_stays_until_dealt_with_and_a_later_push_for_it_replaces_it(
    page: Page, context: BrowserContext, live_school, console_errors
):
    url, school = live_school.server.url, live_school.school
    student = school.ids[STUDENT]
    context.grant_permissions(["notifications"], origin=url)
    push = DevicePush(context, page, url)
    open_inbox(page, url, school.emails[STUDENT])
    to_student = {"targets": {"users": [school.emails[STUDENT]]}}
    fire = live_school.api.send("Fire alarm", "Leave now.", priority="emergency", **to_student)
    late = live_school.api.send(
        "Pool closed", "No swimming today.", priority="urgent", **to_student
    )

    def shown(count: int) -> list[dict]:
        return wait_for(lambda: len(notes := page.evaluate(NOTIFICATIONS)) == count and notes)

    push.deliver(payload(fire["id"], student, "Fire alarm", "Leave now.", "emergency"))
    [first] = shown(1)
    assert (first["title"], first["requireInteraction"]) == ("EMERGENCY: Fire alarm", True)
    assert first["renotify"] is True  # a replacement alerts again

    edited = "Leave now by the east stairs."
    push.deliver(payload(fire["id"], student, "Fire alarm", edited, "emergency"))
    wait_for(lambda: [n["body"] for n in page.evaluate(NOTIFICATIONS)] == [edited])

    push.deliver(payload(late["id"], student, "Pool closed", "No swimming today.", "urgent"))
    notes = {n["tag"]: n for n in shown(2)}
    assert (notes[str(late["id"])]["title"], notes[str(late["id"])]["requireInteraction"]) == (
        "Urgent: Pool closed",
        False,
    )

    push.deliver("not JSON")  # whatever arrives, something is shown
    unreadable = next(n for n in shown(3) if n["tag"] == "")
    assert (unreadable["title"], unreadable["body"]) == (
        "New announcement",
        "Open Schoolbell to read it.",
    )
    assert unreadable["data"]["url"] == url + "/inbox"
    assert console_errors == []


def test_opening_a_notification_reports_it_read_and_shows_it_in_the_inbox(
    page: Page, context: BrowserContext, app, live_school, console_errors
):
    """Headless Chromium cannot click a system notification, and DevTools has no command
    that dispatches `notificationclick`; so this runs the click handler's work itself
    (`openAnnouncement`, in the real worker, with the shown notification's data). What it
    leaves out: the handler closing the notification, and `focus()`, which Chromium allows
    only during a real click (it is refused here, and the window is navigated anyway)."""
    url, school = live_school.server.url, live_school.school
    student = school.ids[STUDENT]
    context.grant_permissions(["notifications"], origin=url)
    push = DevicePush(context, page, url)
    open_inbox(page, url, school.emails[STUDENT])
    page.goto("about:blank")
    sent = live_school.api.send(
        "Trip", "Bring a packed lunch.", targets={"users": [school.emails[STUDENT]]}
    )
    nid = sent["id"]
    push.deliver(payload(nid, student, "Trip", "Bring a packed lunch."))
    wait_for(lambda: delivery(app, student, nid).delivered_at)
    page.goto(url + "/inbox")  # a Schoolbell window is open, elsewhere on the page
    item = page.locator(f"#inbox-item-{nid}")
    expect(item).to_have_attribute("data-state", "delivered")

    [worker] = [w for w in context.service_workers if w.url == url + "/sw.js"]
    worker.evaluate("self.registration.getNotifications().then(ns => openAnnouncement(ns[0].data))")
    expect(page).to_have_url(f"{url}/inbox?open={nid}")
    expect(item).to_be_focused()
    expect(item).to_have_attribute("data-state", "read")
    read = delivery(app, student, nid)
    assert (read.state.value, read.channel.value) == ("read", "push")
    assert console_errors == []


def test_a_browser_that_blocks_notifications_says_where_to_allow_them(
    page: Page, context: BrowserContext, browser, live_school, console_errors
):
    """Blocked and then allowed the way the browser's site settings do it (DevTools'
    Browser.setPermission), while the page is open."""
    url, school = live_school.server.url, live_school.school
    target = context.new_cdp_session(page).send("Target.getTargetInfo")["targetInfo"]
    settings = browser.new_browser_cdp_session()

    def site_setting(setting: str) -> None:
        settings.send(
            "Browser.setPermission",
            {
                "permission": {"name": "notifications"},
                "setting": setting,
                "origin": url,
                "browserContextId": target["browserContextId"],
            },
        )

    site_setting("denied")
    open_inbox(page, url, school.emails[STUDENT])
    expect(status(page)).to_have_text(BLOCKED)
    expect(page.locator("#push-device button")).to_be_hidden()

    site_setting("granted")
    expect(status(page)).to_have_text(OFF)
    expect(page.get_by_role("button", name="Get alerts on this device")).to_be_enabled()
    assert console_errors == []


def test_turning_on_asks_then_reports_a_push_service_that_refuses(
    page: Page, context: BrowserContext, live_school, console_errors
):
    """Permission granted, the click fetches the server's key and subscribes; Chromium
    refuses push in its incognito profiles (which Playwright's contexts are, and it logs
    INCOGNITO), and the component says so and offers the button again."""
    url, school = live_school.server.url, live_school.school
    context.grant_permissions(["notifications"], origin=url)
    asked: list[dict] = []
    subscribed: list[str] = []

    def watch_key(route: Route) -> None:
        asked.append(route.request.headers)
        route.continue_()

    page.route(url + "/api/v1/push/key", watch_key)
    page.route(
        url + "/api/v1/push/subscriptions",
        lambda route: subscribed.append(route.request.method) or route.continue_(),
    )
    open_inbox(page, url, school.emails[STUDENT])
    page.get_by_role("button", name="Get alerts on this device").click()

    error = page.locator("#push-device [data-push-error]")
    expect(error).to_have_text(
        "This browser's push service refused (Registration failed - permission denied). "
        "Try again later."
    )
    expect(status(page)).to_have_text(OFF)
    expect(page.get_by_role("button", name="Get alerts on this device")).to_be_enabled()
    token = page.locator("#push-device").get_attribute("data-csrf-token")
    assert [headers.get("x-csrftoken") for headers in asked] == [token]
    assert subscribed == []  # nothing to tell the server
    assert page.evaluate("Notification.permission") == "granted"
    assert [e for e in console_errors if not e.startswith(INCOGNITO)] == []


def test_browsers_without_push_or_without_https_say_so(playwright: Playwright, live_school):
    """Real conditions, in a Chromium of their own: the Push API switched off (like a
    browser without it), and the app reached over plain HTTP by a host name, where no
    browser offers service workers or push."""
    url, school = live_school.server.url, live_school.school
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            *CHROMIUM_ARGS,
            "--disable-blink-features=PushMessaging",
            "--host-resolver-rules=MAP schoolbell.test 127.0.0.1",
        ],
    )
    try:
        for origin, expected in [
            (url, "Not supported in this browser"),
            (
                url.replace("127.0.0.1", "schoolbell.test"),
                "Not available: this page was not loaded over HTTPS, which alerts on devices need",
            ),
        ]:
            page = browser.new_page()
            errors = watch_console(page)
            sign_in(page, origin, school.emails[STUDENT])
            page.goto(origin + "/inbox")
            expect(status(page)).to_have_text(expected)
            expect(page.locator("#push-device button")).to_be_hidden()
            assert [e for e in errors if not WS_CONNECT_FAILED.match(e)] == [], origin
    finally:
        browser.close()


def test_a_withdrawal_or_all_clear_push_replaces_the_alert_and_reports_nothing(
    app, page: Page, context: BrowserContext, live_school, console_errors
):
    url, school = live_school.server.url, live_school.school
    student = school.ids[STUDENT]
    context.grant_permissions(["notifications"], origin=url)
    push = DevicePush(context, page, url)
    open_inbox(page, url, school.emails[STUDENT])
    to_student = {"targets": {"users": [school.emails[STUDENT]]}}
    fire = live_school.api.send("Fire alarm", "Leave now.", priority="emergency", **to_student)
    push.deliver(payload(fire["id"], student, "Fire alarm", "Leave now.", "emergency"))
    wait_for(lambda: delivery(app, student, fire["id"]).delivered_at)

    for kind, title, body in (
        ("retract", "Withdrawn: Fire alarm", "This announcement was withdrawn."),
        ("all_clear", "All clear: Fire alarm", "You may go back inside."),
    ):
        data = json.loads(payload(fire["id"], student, title, body, "emergency"))
        push.deliver(json.dumps({**data, "type": kind, "receipt": None}))
        wait_for(lambda title=title: [n["title"] for n in page.evaluate(NOTIFICATIONS)] == [title])
        (note,) = page.evaluate(NOTIFICATIONS)
        assert (note["body"], note["tag"], note["requireInteraction"]) == (
            body,
            str(fire["id"]),
            False,
        )
    assert delivery(app, student, fire["id"]).read_at is None
    assert console_errors == []
