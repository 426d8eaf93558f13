"""Another web app of the school embeds schoolbell.js with a client JWT: its page, on
another origin, gets the alerts too, signed in by the token (sent as a subprotocol, never
in the URL), in a real Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .browser import EMBED_PAGE, Sockets
from .school import LiveSchool, build_school

pytestmark = pytest.mark.browser


def test_an_embedding_page_on_another_origin_gets_the_alert(
    page: Page, app, database_url, live_server_factory, other_app, console_errors
):
    origin, pages = other_app
    school = build_school(app)
    live = LiveSchool(school, live_server_factory(database_url, ALLOWED_ORIGINS=origin))
    try:
        token = live.api.client_token(school.emails["s7b_1"])
        pages["/timetable"] = EMBED_PAGE.format(schoolbell=live.server.url, token=token)
        sockets = Sockets(page)
        page.goto(origin + "/timetable")
        sockets.wait_online()
        assert all(token not in ws.url for ws in sockets.opened)  # not in the URL
        assert sockets.messages("auth", sent=True) == []  # signed in before the handshake
        sent = live.api.send(
            "Room change", "Maths is in **B12** today.", targets={"users": [school.emails["s7b_1"]]}
        )
        toast = page.locator(f"#schoolbell-toast-{sent['id']}")
        expect(toast).to_contain_text("Room change")
        expect(toast).to_contain_text("Maths is in B12 today.")
        toast.get_by_role("button", name="Dismiss").click()
        expect(toast).to_have_count(0)
    finally:
        live.close()
    assert console_errors == []
