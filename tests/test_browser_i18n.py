"""In a real Chromium set to German (locale de-DE, so it asks for `Accept-Language:
de-DE`), a person who chose no language gets German pages and German alerts: the
toast's and the emergency overlay's own words come from the client's strings, on
Schoolbell's pages and on another app's page that embeds schoolbell.js."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from .browser import EMBED_PAGE, Sockets, watch_console
from .conftest import PASSWORD
from .school import LiveSchool, build_school

pytestmark = pytest.mark.browser


def test_a_german_browser_gets_german_pages_toasts_and_overlays(
    browser: Browser, live_school: LiveSchool
):
    url, school = live_school.server.url, live_school.school
    context = browser.new_context(locale="de-DE")
    page = context.new_page()
    errors = watch_console(page)
    sockets = Sockets(page)
    page.goto(url + "/signin")
    expect(page.get_by_role("heading", name="Anmelden")).to_be_visible()
    page.get_by_label("E-Mail").fill(school.emails["s7b_1"])
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()
    expect(page.get_by_role("heading", name="Ihre Ankündigungen")).to_be_visible()
    assert sockets.wait_online()["locale"] == "de"

    to_student = {"targets": {"users": [school.emails["s7b_1"]]}}
    sent = live_school.api.send(
        "Schwimmen", "Badekappe mitbringen.", require_ack=True, **to_student
    )
    toast = page.locator(f"#schoolbell-toast-{sent['id']}")
    expect(toast.get_by_role("button", name="Bestätigen")).to_be_visible()
    expect(toast.get_by_role("button", name="Später")).to_be_visible()
    expect(page.get_by_role("region", name="Ankündigungen")).to_be_visible()
    toast.get_by_role("button", name="Später").click()
    expect(toast).to_have_count(0)

    drill = live_school.api.send(
        "Räumung", "Ruhig hinausgehen.", priority="emergency", drill=True, **to_student
    )
    overlay = page.locator(f"#schoolbell-toast-{drill['id']}")
    expect(overlay.locator(".schoolbell-drill")).to_contain_text(
        "PROBEALARM Dies ist eine Übung, kein echter Notfall."
    )
    expect(overlay.get_by_role("group", name="Rückmeldung")).to_be_visible()
    overlay.get_by_role("button", name="Ich bin in Sicherheit").click()
    expect(overlay.locator(".schoolbell-roll-call-status")).to_have_text(
        "Gesendet: Sie sind in Sicherheit. Sie können Ihre Antwort noch ändern."
    )
    expect(overlay.get_by_role("button", name="Ich brauche Hilfe")).to_be_visible()
    expect(overlay.get_by_role("button", name="Schließen")).to_be_visible()
    # The English built into the client is gone from what the page shows.
    assert "Dismiss" not in page.locator("body").inner_text()
    context.close()
    assert errors == []


def test_an_embed_on_another_origin_speaks_the_browsers_language(
    browser: Browser, app, database_url, live_server_factory, other_app
):
    origin, pages = other_app
    school = build_school(app)
    live = LiveSchool(school, live_server_factory(database_url, ALLOWED_ORIGINS=origin))
    context = browser.new_context(locale="de-DE")
    try:
        page = context.new_page()
        errors = watch_console(page)
        token = live.api.client_token(school.emails["s7b_2"])
        pages["/timetable"] = EMBED_PAGE.format(schoolbell=live.server.url, token=token)
        sockets = Sockets(page)
        page.goto(origin + "/timetable")
        hello = sockets.wait_online()
        assert hello["locale"] == "de" and hello["strings"]["Dismiss"] == "Schließen"
        sent = live.api.send(
            "Raumwechsel", "Mathe in B12.", targets={"users": [school.emails["s7b_2"]]}
        )
        toast = page.locator(f"#schoolbell-toast-{sent['id']}")
        expect(toast).to_contain_text("Raumwechsel")
        toast.get_by_role("button", name="Schließen").click()
        expect(toast).to_have_count(0)
        assert errors == []
    finally:
        context.close()
        live.close()
