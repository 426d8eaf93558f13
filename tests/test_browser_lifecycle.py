"""An announcement's life in a real Chromium: composed to go later with a confirmation
deadline and a reminder, it reaches the student's open tab at its time, asking for
confirmation; edited from its status page, the student's open toast
changes in place; withdrawn, it vanishes from the tab and the inbox says so."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, Page, expect

from .browser import Sockets, sign_in, watch_console

pytestmark = pytest.mark.browser
TO_7B = {"classes": [{"name": "7b", "audience": ["students"]}]}


def student_page(browser: Browser, live_school) -> tuple[Page, list[str]]:
    """s7b_1 signed in on the inbox, its socket online."""
    student = browser.new_context().new_page()
    errors = watch_console(student)
    sockets = Sockets(student)
    sign_in(student, live_school.server.url, live_school.school.emails["s7b_1"])
    sockets.wait_online()
    return student, errors


def test_an_announcement_composed_for_later_arrives_at_its_time(
    page: Page, browser: Browser, live_school, console_errors
):
    url = live_school.server.url
    student, student_errors = student_page(browser, live_school)
    sign_in(page, url, live_school.school.emails["admin"])
    page.goto(url + "/notifications/new")
    page.get_by_label("Title").fill("Assembly moved")
    page.get_by_label("Message").fill("It is in the **gym** today.")
    page.get_by_label("Students of 7b").check()
    at = datetime.now(UTC) + timedelta(seconds=15)  # the test server's zone is UTC
    page.get_by_label(re.compile("Send later")).fill(at.strftime("%Y-%m-%dT%H:%M:%S"))
    deadline = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    page.get_by_label(re.compile("Confirm by")).fill(deadline.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Remind one hour before").check()
    expect(page.get_by_role("button", name="Schedule")).to_be_visible()
    page.get_by_role("button", name="Schedule").click()
    expect(page).to_have_url(re.compile(r"/notifications/\d+$"))
    nid = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#notification-stage")).to_have_text("scheduled")
    expect(page.locator("[data-fact=send-at]")).to_contain_text(at.strftime("%H:%M:%S")[:5])
    toast = student.locator(f"#schoolbell-toast-{nid}")
    expect(toast).to_have_count(0)
    expect(toast).to_be_visible(timeout=30_000)
    expect(toast.locator(".schoolbell-title")).to_have_text("Assembly moved")
    expect(toast.get_by_role("button", name="Confirm")).to_be_visible()  # a deadline asks
    page.reload()
    expect(page.locator("#notification-stage")).to_have_text("sent")
    expect(page.locator("[data-fact=confirm-by]")).to_contain_text(
        deadline.strftime("%d %b %Y, %H:%M")
    )
    reminder = deadline - timedelta(hours=1)
    expect(page.locator("[data-fact=reminders]")).to_contain_text(reminder.strftime("%H:%M"))
    assert console_errors == [] and student_errors == []


def test_an_edit_changes_the_open_toast_and_a_withdrawal_removes_it(
    page: Page, browser: Browser, live_school, console_errors
):
    url = live_school.server.url
    student, student_errors = student_page(browser, live_school)
    nid = live_school.api.send("Trip at 9", "Bring lunch", targets=TO_7B)["id"]
    toast = student.locator(f"#schoolbell-toast-{nid}")
    expect(toast.locator(".schoolbell-title")).to_have_text("Trip at 9")
    toast.evaluate("el => { el.dataset.marker = 'first'; }")  # to tell it is the same place

    sign_in(page, url, live_school.school.emails["admin"])
    page.goto(f"{url}/notifications/{nid}")
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Title").fill("Trip at 10")
    page.get_by_label("Message").fill("Bring lunch and a **hat**")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_contain_text("Open alerts now show the new version")

    expect(toast.locator(".schoolbell-title")).to_have_text("Trip at 10")
    expect(toast.locator(".schoolbell-body strong")).to_have_text("hat")
    expect(toast.locator(".schoolbell-meta")).to_contain_text("edited")
    expect(student.locator(".schoolbell-toast")).to_have_count(1)
    assert toast.evaluate("el => el.dataset.revision") == "2"

    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Withdraw").click()
    expect(page.locator("#notification-stage")).to_have_text("withdrawn")
    expect(toast).to_have_count(0)
    student.reload()  # the inbox says so; no alert comes back
    item = student.locator(f"#inbox-item-{nid}")
    expect(item.locator("[data-stage=withdrawn]")).to_be_visible()
    expect(student.locator(f"#schoolbell-toast-{nid}")).to_have_count(0)
    assert console_errors == [] and student_errors == []
