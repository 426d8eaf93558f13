"""The old design's browser client, as it was (a page of another school app, its own
script), in a real Chromium against a real server: every message it gets becomes a
popup, so the popups must be the announcements and nothing else."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from .school import LiveSchool, build_school

pytestmark = pytest.mark.browser

# The old client, unchanged: token in the URL, "ping" every interval, JSON.parse on
# every message, a popup of title and body, a fixed 5 s before reconnecting.
OLD_CLIENT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Old school app</title>
<link rel="icon" href="data:,"></head>
<body><h1>Timetable</h1><div id="popups"></div>
<script>
window.opened = 0; window.popups = []; window.decodeErrors = [];
function popup(title, body) {
  const box = document.createElement("div"); box.className = "popup";
  const h = document.createElement("h3"); h.textContent = title;
  const p = document.createElement("p"); p.textContent = body;
  box.append(h, p); document.getElementById("popups").append(box);
  window.popups.push([title, body]);
}
function connect() {
  const ws = new WebSocket("WS_BASE/api/websocket/notifications?token=TOKEN");
  let timer;
  ws.onopen = () => { window.opened += 1; timer = setInterval(() => ws.send("ping"), 300); };
  ws.onmessage = (event) => {
    let n;
    try { n = JSON.parse(event.data); } catch (e) { window.decodeErrors.push(event.data); return; }
    popup(n.title || "Notification", n.body || "");
  };
  ws.onclose = () => { clearInterval(timer); setTimeout(connect, 5000); };
}
connect();
</script></body></html>
"""


def test_the_old_browser_client_shows_only_announcements(
    page: Page, app, database_url, live_server_factory, other_app, console_errors, artifacts
):
    origin, pages = other_app
    school = build_school(app)
    server = live_server_factory(database_url, ALLOWED_ORIGINS=origin, WS_PING_INTERVAL_S="1")
    live = LiveSchool(school, server)
    try:
        token = live.api.client_token(school.emails["g7b_1"])
        live.api.send(
            "Sent before", "While the page was closed.", targets={"users": [school.emails["g7b_1"]]}
        )
        pages["/old"] = OLD_CLIENT_PAGE.replace(
            "WS_BASE", server.url.replace("http", "ws")
        ).replace("TOKEN", token)
        page.goto(origin + "/old")
        popups = page.locator(".popup")
        expect(popups).to_have_count(1)  # what was pending, replayed on connect
        live.api.send(
            "Parents' evening",
            "Thursday, *18:00* & 19:00.",
            targets={"users": [school.emails["g7b_1"]]},
        )
        expect(popups).to_have_count(2)
        time.sleep(3)  # several of its pings and the server's
        assert page.evaluate("window.popups") == [
            ["Sent before", "While the page was closed."],
            ["Parents' evening", "Thursday, 18:00 & 19:00."],
        ]
        assert page.evaluate("window.decodeErrors") == []
        assert page.evaluate("window.opened") == 1  # never dropped, never reconnected
        page.screenshot(path=str(artifacts / "legacy-client-popups.png"))
    finally:
        live.close()
    assert console_errors == []
