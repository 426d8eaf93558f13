"""In a real browser: an admin erases a person only after typing their e-mail again, the
audit log shows it by id, and the privacy page is one click away; nothing breaks the
Content-Security-Policy."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .browser import sign_in

pytestmark = pytest.mark.browser


def test_an_admin_erases_a_person_after_confirming(
    page: Page, live_school, artifacts, console_errors
):
    school, url = live_school.school, live_school.server.url
    sign_in(page, url, school.emails["admin"])
    page.goto(f"{url}/roster/users/{school.ids['s7b_1']}/edit")
    erase = page.get_by_role("button", name="Erase S7B_1 for good")
    expect(page.get_by_role("link", name="Export data")).to_be_visible()

    page.get_by_label("Type their e-mail address to confirm").fill("wrong@school.test")
    erase.click()
    expect(page.locator("#confirm_email-errors")).to_contain_text("Type the person")
    expect(page.locator("h1")).to_contain_text("S7B_1")

    page.get_by_label("Type their e-mail address to confirm").fill(school.emails["s7b_1"])
    page.get_by_role("button", name="Erase S7B_1 for good").click()
    expect(page.locator("h1")).to_contain_text("Erased person")
    expect(page.locator("[data-erased]")).to_be_visible()
    page.screenshot(path=artifacts / "person-erased.png", full_page=True)

    page.get_by_role("link", name="Audit log").click()
    row = page.locator('tr[data-action="user.erased"]')
    expect(row).to_contain_text(f"user:erased-{school.ids['s7b_1']}@erased.invalid")
    expect(page.locator("#audit-results")).not_to_contain_text("s7b_1@school.test")
    page.get_by_label("What").select_option("user.erased")
    expect(page.locator("#audit-results tbody tr")).to_have_count(1)
    page.screenshot(path=artifacts / "audit-log.png", full_page=True)

    page.get_by_role("contentinfo").get_by_role("link", name="Privacy").click()  # the footer
    expect(page.locator("#privacy-announcements")).to_contain_text("365 days after sending")
    # The one refused confirmation answered 400 (Chromium logs that); nothing else.
    assert [e for e in console_errors if "status of 400" not in e] == []
    assert len(console_errors) == 1
