"""An emergency drill in a real Chromium, from start to end: an admin starts it from a
template; the student's open page covers the screen with it, marked DRILL; the student
answers "I'm safe"; the admin's status page shows that in the roll call without a
reload; the admin gives the all clear; the student's overlay turns into its message."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from .browser import online_in_own_context, sign_in

pytestmark = pytest.mark.browser


def test_an_emergency_drill_from_template_to_all_clear(
    page: Page, browser: Browser, live_school, artifacts, console_errors
):
    url, school = live_school.server.url, live_school.school
    student, student_errors, _ = online_in_own_context(browser, url, school.emails["s7b_1"])

    # The admin starts from the lockdown template and ticks "This is a drill".
    sign_in(page, url, school.emails["admin"])
    page.goto(url + "/notifications/new")
    expect(page.get_by_label("This is a drill")).to_be_hidden()
    page.get_by_role("button", name="Lockdown", exact=True).click()
    expect(page.get_by_label("Title")).to_have_value("Lockdown: stay inside, lock the doors")
    expect(page.get_by_label("Priority")).to_have_value("emergency")
    page.get_by_label("This is a drill").check()
    page.get_by_label("Students of 7b").check()
    preview = page.locator("#alert-preview .schoolbell-toast")
    expect(preview.locator(".schoolbell-drill")).to_contain_text("DRILL")
    expect(preview.get_by_role("button", name="I'm safe")).to_be_disabled()
    page.get_by_role("button", name="Send").click()
    page.get_by_role("button", name="Yes, send now").click()
    expect(page).to_have_url(re.compile(r"/notifications/\d+$"))
    nid = int(page.url.rsplit("/", 1)[1])
    roll_call = page.locator(f"#roll-call-{nid}")
    expect(roll_call.locator('dd[data-answer="none"]')).to_have_text("3")

    # The student's page: the overlay, marked DRILL, asks for the roll call.
    overlay = student.locator(".schoolbell-overlay")
    dialog = overlay.get_by_role("alertdialog")
    expect(dialog).to_contain_text("Lockdown: stay inside, lock the doors")
    expect(dialog.locator(".schoolbell-drill")).to_contain_text("DRILL")
    expect(dialog.get_by_role("button", name="Dismiss")).to_be_focused()
    dialog.get_by_label("Note for staff (optional)").fill("In the library <b>with</b> 4 others")
    dialog.get_by_role("button", name="I'm safe").click()
    expect(dialog.get_by_role("status")).to_contain_text("Sent: you are safe")
    expect(dialog.get_by_role("button", name="I'm safe")).to_have_attribute("aria-pressed", "true")
    student.screenshot(path=artifacts / "emergency-drill-student.png")

    # The admin's roll call follows, without a reload.
    page.evaluate("window.__sameDocument = true")
    expect(roll_call.locator('dd[data-answer="safe"]')).to_have_text("1", timeout=10_000)
    expect(roll_call.locator('dd[data-answer="none"]')).to_have_text("2")
    person = roll_call.locator(f'li[data-person="{school.ids["s7b_1"]}"]')
    expect(person).to_contain_text("In the library <b>with</b> 4 others")
    assert page.evaluate("window.__sameDocument") is True
    # The answer read the alert: the overlay is still up in the tab that answered.
    expect(dialog).to_be_visible()
    page.screenshot(path=artifacts / "emergency-drill-roll-call.png", full_page=True)

    # All clear: the student's overlay turns into its message.
    page.get_by_label("All-clear message").fill("Drill over. Thank you, everyone.")
    page.get_by_role("button", name="Send all clear").click()
    expect(page.locator("#all-clear-given")).to_contain_text("Drill over. Thank you, everyone.")

    calm = overlay.locator(".schoolbell-all-clear")
    expect(calm.get_by_role("heading", name="All clear")).to_be_visible()
    expect(calm).to_contain_text("Drill over. Thank you, everyone.")
    expect(calm.locator(".schoolbell-drill")).to_contain_text("DRILL")
    expect(overlay.get_by_role("button", name="I'm safe")).to_have_count(0)
    expect(calm.get_by_role("button", name="Close")).to_be_focused()
    student.screenshot(path=artifacts / "emergency-drill-all-clear.png")
    calm.get_by_role("button", name="Close").click()
    expect(overlay).to_have_count(0)
    assert console_errors == [] and student_errors == []
