"""A recipient's inbox and live alerts in a real Chromium against a real gunicorn + gevent
server: toasts, the live inbox list, receipts, emergencies, resume, reconnect, and every
open tab of a user showing the same announcement."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from .browser import (
    WS_CONNECT_FAILED,
    Sockets,
    poll,
    sign_in,
    wait_live,
    watch_console,
    watch_status,
)

pytestmark = pytest.mark.browser

TO_7B = {"classes": [{"name": "7b", "audience": ["students", "guardians"]}]}


@pytest.fixture
def student(page: Page, live_school, console_errors) -> Sockets:
    """s7b_1 signed in through the real form, on /inbox, with a live socket."""
    sockets = Sockets(page)
    sign_in(page, live_school.server.url, live_school.school.emails["s7b_1"])
    expect(page).to_have_url(live_school.server.url + "/inbox")
    expect(page.get_by_role("heading", name="Your announcements")).to_be_visible()
    sockets.wait_online()
    # Set on this document only: still there at the end means the page never reloaded.
    page.evaluate("window.__sameDocument = true")
    return sockets


def toast(page: Page, notification_id: int):
    return page.locator("#schoolbell-toasts").locator(f"#schoolbell-toast-{notification_id}")


def inbox_item(page: Page, notification_id: int):
    return page.locator(f"#inbox-list #inbox-item-{notification_id}")


def status(live_school, notification_id: int, until) -> dict:
    """GET /api/v1/notifications/<id> until `until(counts)` holds (receipts are batched)."""

    def fetch():
        code, body = live_school.api.call("GET", f"/notifications/{notification_id}")
        assert code == 200, body
        return body

    return poll(fetch, lambda body: until(body["counts"]))


def deliveries(live_school, notification_id: int, state: str) -> list[dict]:
    code, body = live_school.api.call(
        "GET", f"/notifications/{notification_id}/deliveries?state={state}"
    )
    assert code == 200, body
    return body["deliveries"]


def assert_receipt(live_school, notification_id: int, state: str) -> None:
    """The student's delivery reached `state`, with its timestamp set."""
    counts = status(live_school, notification_id, lambda c: c[state] == 1)["counts"]
    assert counts[state] == 1, counts
    rows = deliveries(live_school, notification_id, state)
    assert [row["user"]["email"] for row in rows] == [live_school.school.emails["s7b_1"]]
    assert rows[0][f"{state}_at"], rows


def test_announcement_arrives_live_and_is_confirmed_in_the_inbox(
    page: Page, live_school, student, artifacts, console_errors
):
    expect(page.locator("#inbox-list")).to_contain_text("No announcements yet.")
    sent = live_school.api.send(
        "Fire drill at 10:00", "Meet at the **yard**.", targets=TO_7B, require_ack=True
    )
    nid = sent["id"]

    alert = toast(page, nid)
    expect(alert).to_be_visible()
    expect(alert).to_have_attribute("role", "status")
    expect(alert.get_by_role("heading")).to_have_text("Fire drill at 10:00")
    expect(alert.locator("strong")).to_have_text("yard")
    expect(page.get_by_role("status").filter(has_text="Fire drill at 10:00")).to_be_visible()
    item = inbox_item(page, nid)  # the list was re-fetched on `schoolbell:notification`
    expect(item.get_by_role("heading")).to_have_text("Fire drill at 10:00")
    expect(page.locator("#inbox-list")).not_to_contain_text("No announcements yet.")
    page.screenshot(path=artifacts / "inbox-alert.png", full_page=True)

    item.get_by_role("button", name="Confirm").click()
    expect(item.locator(".badge.state")).to_have_text("confirmed")
    expect(item.get_by_role("button", name="Confirm")).to_have_count(0)
    page.screenshot(path=artifacts / "inbox-confirmed.png", full_page=True)

    assert_receipt(live_school, nid, "acknowledged")
    assert page.evaluate("window.__sameDocument") is True
    assert console_errors == []


def test_announcement_is_confirmed_in_the_toast(
    page: Page, live_school, student, artifacts, console_errors
):
    nid = live_school.api.send(
        "Sign the trip form", "Due Friday.", targets=TO_7B, require_ack=True
    )["id"]
    alert = toast(page, nid)
    expect(alert).to_be_visible()
    expect(inbox_item(page, nid)).to_be_visible()
    page.screenshot(path=artifacts / "inbox-toast-confirm.png", full_page=True)

    alert.get_by_role("button", name="Confirm").click()
    expect(alert).to_have_count(0)
    assert_receipt(live_school, nid, "acknowledged")
    assert page.evaluate("window.__sameDocument") is True
    assert console_errors == []


def test_markup_in_title_and_body_never_runs(
    page: Page, live_school, student, artifacts, console_errors
):
    title = "<b>bold</b><script>window.__pwned=4</script>"
    body = (
        "<script>window.__pwned=1</script>\n\n"
        '<img src=x onerror="window.__pwned=2">\n\n'
        "[x](javascript:window.__pwned=3)\n\nStill *here*.\n\n"
        "https://example.org/" + "a" * 150
    )  # a long word must not overflow the toast
    nid = live_school.api.send(title, body, targets=TO_7B)["id"]

    alert, item = toast(page, nid), inbox_item(page, nid)
    expect(alert).to_be_visible()
    expect(item).to_be_visible()
    for shown in (alert, item):
        heading = shown.get_by_role("heading")
        expect(heading).to_have_text(title)  # literal text, tags and all
        expect(heading.locator("*")).to_have_count(0)
        expect(shown.locator("script, img, [onerror]")).to_have_count(0)
        expect(shown.locator("em")).to_have_text("here")
        for link in shown.locator("a").all():
            href = link.get_attribute("href") or ""
            assert not href.strip().lower().startswith("javascript:"), href
    expect(page.locator("a[href^='javascript:' i]")).to_have_count(0)
    assert alert.evaluate("el => el.scrollWidth <= el.clientWidth")
    page.screenshot(path=artifacts / "inbox-markup.png", full_page=True)

    # Clicking the neutered link runs nothing either.
    links = alert.locator("a", has_text="x")
    if links.count():
        links.first.click(modifiers=["Control"])
    page.wait_for_timeout(200)
    assert page.evaluate("window.__pwned") is None
    assert console_errors == []  # nothing even tried (a CSP violation is logged)


def test_emergency_overlay_stays_until_confirmed(
    page: Page, live_school, student, artifacts, console_errors
):
    nid = live_school.api.send(
        "Lockdown", "Stay in your classroom.", targets=TO_7B, priority="emergency", require_ack=True
    )["id"]
    dialog = page.get_by_role("alertdialog", name="Lockdown")
    expect(dialog).to_be_visible()
    expect(dialog).to_have_attribute("aria-modal", "true")
    confirm = dialog.get_by_role("button", name="Confirm")
    expect(confirm).to_be_focused()
    # The roll call, then Confirm; no "Later" for an emergency.
    labels = dialog.get_by_role("button").evaluate_all("bs => bs.map(b => b.textContent)")
    assert labels == ["I'm safe", "I need help", "Confirm"]
    page.screenshot(path=artifacts / "inbox-emergency.png")

    page.keyboard.press("Escape")
    safe = dialog.get_by_role("button", name="I'm safe")
    for key, focused in (("Tab", safe), ("Shift+Tab", confirm), ("Tab", safe)):
        page.keyboard.press(key)  # focus stays in the dialog, going round
        expect(focused).to_be_focused()
    confirm.focus()
    page.wait_for_timeout(1000)
    expect(dialog).to_be_visible()
    assert status(live_school, nid, lambda c: c["delivered"] == 1)["counts"]["acknowledged"] == 0

    confirm.click()
    expect(dialog).to_have_count(0)
    expect(page.locator(".schoolbell-overlay")).to_have_count(0)
    assert_receipt(live_school, nid, "acknowledged")
    assert console_errors == []


def test_reload_resumes_without_repeating_seen_announcements(
    page: Page, live_school, student, artifacts, console_errors
):
    sockets = student
    other = live_school.api.send(
        "For 7a only", "Not for 7b.", targets={"classes": [{"name": "7a"}]}
    )["id"]
    first = live_school.api.send("Library closed today", "Sorry!", targets=TO_7B)["id"]
    expect(toast(page, first)).to_be_visible()
    assert_receipt(live_school, first, "delivered")

    page.reload()
    sockets.wait_online(sockets=2)
    assert sockets.messages("resume", sent=True)[0]["last_id"] == first
    expect(inbox_item(page, first)).to_be_visible()
    page.wait_for_timeout(500)  # time for anything replayed to be shown
    expect(toast(page, first)).to_have_count(0)

    second = live_school.api.send("Library open tomorrow", "Welcome back.", targets=TO_7B)["id"]
    expect(toast(page, second)).to_be_visible()
    expect(inbox_item(page, second)).to_be_visible()
    page.screenshot(path=artifacts / "inbox-resumed.png", full_page=True)

    expect(toast(page, other)).to_have_count(0)

    # A tab that resumes from further back gets both again and drops them by id.
    page.evaluate(
        """last => { for (const k of Object.keys(localStorage))
                                 if (k.endsWith(':last')) localStorage.setItem(k, last); }""",
        str(other),
    )
    page.reload()
    sockets.wait_online(sockets=3)
    assert sockets.messages("resume", sent=True)[0]["last_id"] == other
    sockets.wait_for(
        lambda: {m["id"] for m in sockets.messages("notification")} >= {first, second},
        what="the replay",
    )
    page.wait_for_timeout(300)
    expect(page.locator("#schoolbell-toasts .schoolbell-toast")).to_have_count(0)
    acks = [m for m in sockets.messages("ack", sent=True) if m["state"] == "delivered"]
    assert acks == []  # duplicates are not acknowledged again
    assert console_errors == []


def test_lost_server_shows_reconnecting_banner_and_backs_off(
    page: Page, live_school, student, artifacts, console_errors
):
    sockets = student
    banner = page.locator("#schoolbell-banner")
    expect(banner).to_have_count(0)
    opened_before = len(sockets.opened)

    live_school.server.stop()
    stopped_at = time.monotonic()
    expect(banner).to_be_visible(timeout=5000)
    expect(banner).to_have_text("Reconnecting\u2026")
    expect(banner).to_have_attribute("role", "status")
    page.screenshot(path=artifacts / "inbox-reconnecting.png")

    page.wait_for_timeout(max(0, 5000 - (time.monotonic() - stopped_at) * 1000))
    attempts = len(sockets.opened) - opened_before
    assert 1 <= attempts <= 5, f"{attempts} connection attempts in 5 s"
    expect(banner).to_be_visible()
    # Chromium logs each refused socket; nothing else may be logged.
    assert [e for e in console_errors if not WS_CONNECT_FAILED.match(e)] == []


def test_toast_is_dismissed_with_the_keyboard(
    page: Page, live_school, student, artifacts, console_errors
):
    nid = live_school.api.send("Choir practice moved", "Now in room 12.", targets=TO_7B)["id"]
    alert = toast(page, nid)
    expect(alert).to_be_visible()
    expect(alert.get_by_role("button", name="Confirm")).to_have_count(0)
    dismiss = alert.get_by_role("button", name="Dismiss")
    dismiss.focus()
    expect(dismiss).to_be_focused()
    page.screenshot(path=artifacts / "inbox-keyboard.png")

    page.keyboard.press("Enter")
    expect(alert).to_have_count(0)
    assert_receipt(live_school, nid, "read")
    assert console_errors == []


def test_every_open_tab_shows_the_announcement(
    page: Page, live_school, student, artifacts, console_errors
):
    second_tab = page.context.new_page()  # same cookies, same localStorage
    second_tab_errors = watch_console(second_tab)
    watch_status(second_tab)  # it shares the first tab's socket (test_browser_tabs.py)
    second_tab.goto(live_school.server.url + "/inbox")
    wait_live(second_tab)
    nid = live_school.api.send("Both tabs", "Seen twice.", targets=TO_7B)["id"]
    for tab in (page, second_tab):
        expect(toast(tab, nid)).to_be_visible()
        expect(inbox_item(tab, nid)).to_be_visible()
    second_tab.screenshot(path=artifacts / "inbox-second-tab.png")
    assert console_errors == second_tab_errors == []


def test_confirming_in_one_tab_clears_the_others(page: Page, live_school, student, console_errors):
    second_tab = page.context.new_page()
    second_tab_errors = watch_console(second_tab)
    watch_status(second_tab)
    second_tab.goto(live_school.server.url + "/inbox")
    wait_live(second_tab)
    nid = live_school.api.send("Sign the form", "Please confirm.", targets=TO_7B, require_ack=True)[
        "id"
    ]
    for tab in (page, second_tab):
        expect(toast(tab, nid)).to_be_visible()
    toast(page, nid).get_by_role("button", name="Confirm").click()
    # The other tab drops its alert and its inbox shows the confirmation, no reload.
    expect(toast(second_tab, nid)).to_have_count(0)
    expect(inbox_item(second_tab, nid)).to_have_attribute("data-state", "acknowledged")
    expect(inbox_item(page, nid)).to_have_attribute("data-state", "acknowledged")
    assert console_errors == second_tab_errors == []
