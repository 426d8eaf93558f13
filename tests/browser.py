"""Helpers shared by the browser tests (Playwright driving Debian's Chromium).

The `console_errors` fixture (tests/conftest.py) is `watch_console(page)`; `sign_in` goes
through the real form; `Sockets` records the page's WebSockets and their frames, so a test
can wait for the server's `hello` before it sends anything. Tabs that share another tab's
socket open none: `watch_status(page)` records the page's "schoolbell:status" and
"schoolbell:notification" events, and `wait_live(page)` waits until the page is online.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, WebSocket, expect

from .conftest import PASSWORD

# What Chromium logs (as a console error) for a socket it could not open: expected while
# a server is down, never otherwise.
# Another web app's page that embeds the client with a client JWT (on the other origin).
EMBED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Timetable</title>
<link rel="icon" href="data:,"></head>
<body><h1>Timetable</h1>
<script src="{schoolbell}/static/js/schoolbell.js" data-token="{token}" defer></script>
</body></html>"""

WS_CONNECT_FAILED = re.compile(r"^WebSocket connection to 'wss?://[^']+' failed")


def watch_console(page: Page) -> list[str]:
    """Collect the errors the page logs (a CSP violation shows up here) and uncaught
    exceptions; each test expects none."""
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def sign_in(page: Page, url: str, email: str, password: str = PASSWORD) -> None:
    """Sign in through the real form at `url`/signin and wait until signed in."""
    page.goto(url + "/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def online_in_own_context(browser, url: str, email: str) -> tuple[Page, list[str], Sockets]:
    """Another person in a browser context of their own (own cookies), signed in, their
    page's socket online: (page, its console errors, its Sockets)."""
    page = browser.new_context().new_page()
    errors = watch_console(page)
    sockets = Sockets(page)
    sign_in(page, url, email)
    sockets.wait_online()
    return page, errors, sockets


class Sockets:
    """Every WebSocket a page opens, with the JSON messages it sent and received."""

    def __init__(self, page: Page):
        self.page = page
        self.opened: list[WebSocket] = []
        self.received: list[list[dict[str, Any]]] = []
        self.sent: list[list[dict[str, Any]]] = []
        page.on("websocket", self._opened)

    def _opened(self, ws: WebSocket) -> None:
        received: list[dict[str, Any]] = []
        sent: list[dict[str, Any]] = []
        self.opened.append(ws)
        self.received.append(received)
        self.sent.append(sent)
        ws.on("framereceived", lambda payload: _append_json(received, payload))
        ws.on("framesent", lambda payload: _append_json(sent, payload))

    def wait_for(
        self, predicate: Callable[[], Any], timeout_s: float = 10, what: str = "condition"
    ) -> Any:
        """Let the page run (events are dispatched meanwhile) until predicate() is true."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.page.wait_for_timeout(50)

    def messages(self, kind: str, socket: int = -1, sent: bool = False) -> list[dict]:
        """Messages of `kind` on one socket (default: the newest)."""
        frames = self.sent if sent else self.received
        if not frames:
            return []
        return [m for m in frames[socket] if m.get("type") == kind]

    def wait_online(self, sockets: int = 1, timeout_s: float = 10) -> dict:
        """Wait until the `sockets`-th socket got its `hello` and said `resume`;
        returns the hello."""
        self.wait_for(
            lambda: (
                len(self.opened) >= sockets
                and self.messages("hello")
                and self.messages("resume", sent=True)
            ),
            timeout_s,
            f"socket {sockets} to be online",
        )
        return self.messages("hello")[0]


def _append_json(messages: list[dict[str, Any]], payload: str | bytes) -> None:
    try:
        message = json.loads(payload)
    except ValueError:
        return
    if isinstance(message, dict):
        messages.append(message)


def poll(
    fetch: Callable[[], Any],
    until: Callable[[Any], bool],
    timeout_s: float = 5,
    interval_s: float = 0.05,
) -> Any:
    """Call fetch() until until(result) holds (receipts are written in batches); returns
    the last result, which the caller asserts on."""
    deadline = time.monotonic() + timeout_s
    result = fetch()
    while not until(result) and time.monotonic() < deadline:
        time.sleep(interval_s)
        result = fetch()
    return result


# Recorded from the page's first script on, so no event is missed.
RECORD_EVENTS = """
window.__schoolbell = {status: [], notifications: []};
document.addEventListener("schoolbell:status",
  e => window.__schoolbell.status.push(e.detail.state));
document.addEventListener("schoolbell:notification",
  e => window.__schoolbell.notifications.push(e.detail.id));
"""


def watch_status(page: Page) -> None:
    """Record the page's status and notification events (call before it navigates)."""
    page.add_init_script(RECORD_EVENTS)


def wait_live(page: Page, timeout_s: float = 10) -> None:
    """Wait until the page's last "schoolbell:status" said online (its own socket's hello,
    or the one its leader tab relayed)."""
    page.wait_for_function(
        "() => window.__schoolbell && window.__schoolbell.status.at(-1) === 'online'",
        timeout=timeout_s * 1000,
    )


def notified(page: Page) -> list[int]:
    """Ids of the "schoolbell:notification" events the page fired, in order."""
    return page.evaluate("window.__schoolbell.notifications")
