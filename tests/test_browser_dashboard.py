"""The staff dashboard in a real Chromium: compose with live preview, send, the student's
alert, the status page, the online panel, teachers' limits, drafts and scripts."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from .browser import sign_in, watch_console

pytestmark = pytest.mark.browser


def second_person(browser: Browser, url: str, email: str) -> tuple[Page, list[str]]:
    """Another person in their own browser context (own cookies), signed in."""
    page = browser.new_context().new_page()
    errors = watch_console(page)
    sign_in(page, url, email)
    return page, errors


def count(page: Page):
    return page.locator("#recipient-count [data-recipient-count]")


def test_compose_preview_send_alert_and_live_status(
    page: Page, browser: Browser, live_school, artifacts, console_errors
):
    url, school = live_school.server.url, live_school.school
    student, student_errors = second_person(browser, url, school.emails["s7b_1"])
    expect(student).to_have_url(re.compile(r"/inbox$"))

    sign_in(page, url, school.emails["admin"])
    page.get_by_role("link", name="New announcement").first.click()
    expect(page.get_by_role("heading", name="New announcement")).to_be_visible()

    # The preview follows the typing, rendered and sanitised like the real alert.
    page.get_by_label("Title").press_sequentially("Swimming on Friday")
    page.get_by_label("Message").press_sequentially(
        "Bring a **towel** <script>window.__pwned=1</script>"
    )
    preview = page.locator("#alert-preview .schoolbell-toast")
    expect(preview.locator(".schoolbell-title")).to_have_text("Swimming on Friday")
    expect(preview.locator(".schoolbell-body strong")).to_have_text("towel")
    expect(page.locator("#alert-preview script")).to_have_count(0)
    expect(page.locator("#recipient-count")).to_contain_text("Choose who should get it.")

    # The count follows the picking.
    page.get_by_label("Students of 7b").check()
    expect(count(page)).to_have_text("3")
    page.get_by_label("Guardians of 7b").check()
    expect(count(page)).to_have_text("6")
    expect(page.locator("#recipient-count")).to_contain_text("3 guardians in 7b")
    page.get_by_label("Add people").press_sequentially("t7a")
    page.locator("#people-results").get_by_role("button", name="Add").click()
    expect(page.locator("#chosen-people")).to_contain_text("T7A")
    expect(count(page)).to_have_text("7")
    page.locator("#chosen-people").get_by_role("button", name="Remove T7A").click()
    expect(count(page)).to_have_text("6")
    page.get_by_label("Requires confirmation").check()
    expect(preview.get_by_role("button", name="Confirm")).to_be_visible()
    page.screenshot(path=artifacts / "dashboard-compose.png", full_page=True)

    page.get_by_role("button", name="Send").click()
    expect(page).to_have_url(re.compile(r"/notifications/\d+$"))
    nid = int(page.url.rsplit("/", 1)[1])
    # (The student's tab may already have said "delivered": count the total, not pending.)
    expect(page.locator(f"#delivery-status-{nid}")).to_contain_text("6 recipients")

    # The student's open inbox shows the alert at once, without reloading.
    toast = student.locator(f"#schoolbell-toast-{nid}")
    expect(toast).to_contain_text("Swimming on Friday")
    expect(student.locator(f"#inbox-item-{nid}")).to_be_visible()
    assert student.evaluate("window.__pwned") is None
    student.screenshot(path=artifacts / "dashboard-student-alert.png")

    # ...and the admin's status page shows the receipts arrive, without reloading.
    expect(page.locator(f'#delivery-status-{nid} dd[data-state="delivered"]')).to_have_text(
        "1", timeout=10_000
    )
    toast.get_by_role("button", name="Confirm").click()
    expect(page.locator(f'#delivery-status-{nid} dd[data-state="acknowledged"]')).to_have_text(
        "1", timeout=10_000
    )
    page.screenshot(path=artifacts / "dashboard-status.png", full_page=True)
    assert page.evaluate("window.__pwned") is None
    assert console_errors == [] and student_errors == []


def test_the_online_panel_follows_tabs_opening_and_closing(
    page: Page, browser: Browser, live_school, artifacts, console_errors
):
    url, school = live_school.server.url, live_school.school
    sign_in(page, url, school.emails["admin"])
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    panel = page.locator("#online-panel")
    expect(panel.locator('[data-class="7b"]')).to_contain_text("7b: 0/3 students online")
    expect(panel).not_to_contain_text("S7B_1")

    student, student_errors = second_person(browser, url, school.emails["s7b_1"])
    expect(panel).to_contain_text("S7B_1", timeout=10_000)
    expect(panel.locator('[data-class="7b"]')).to_contain_text("7b: 1/3 students online")
    expect(panel.locator('[data-role="student"]')).to_contain_text("1/6")

    # The search box narrows the list, and keeps doing so as the panel is replaced.
    page.get_by_label("Find someone online").fill("nobody-matches")
    expect(panel.locator('[data-search*="s7b_1"]')).to_be_hidden()
    page.get_by_label("Find someone online").fill("s7b")
    expect(panel.locator('[data-search*="s7b_1"]')).to_be_visible()
    page.screenshot(path=artifacts / "dashboard-online.png", full_page=True)

    student.context.close()
    expect(panel).not_to_contain_text("S7B_1", timeout=10_000)
    expect(panel.locator('[data-class="7b"]')).to_contain_text("7b: 0/3 students online")
    assert console_errors == [] and student_errors == []


def test_a_teacher_cannot_pick_another_teachers_class(page: Page, live_school, console_errors):
    url, school = live_school.server.url, live_school.school
    sign_in(page, url, school.emails["t7b"])
    page.goto(url + "/notifications/new")
    expect(page.get_by_label("Students of 7b")).to_be_visible()
    expect(page.get_by_label("Students of 7a")).to_have_count(0)
    expect(page.get_by_label("The whole school")).to_have_count(0)
    page.get_by_label("Add people").press_sequentially("s7a")
    expect(page.locator("#people-results")).to_contain_text("Nobody you can reach matches")
    page.get_by_label("Add people").fill("")
    page.get_by_label("Add people").press_sequentially("s7b_2")
    expect(page.locator("#people-results")).to_contain_text("S7B_2")
    assert console_errors == []


def test_a_draft_survives_a_reload(page: Page, live_school, console_errors):
    url, school = live_school.server.url, live_school.school
    sign_in(page, url, school.emails["admin"])
    page.goto(url + "/notifications/new")
    page.get_by_label("Title").press_sequentially("Half-written")
    page.get_by_label("Message").press_sequentially("Words I do not want to type again")
    page.get_by_label("Priority").select_option("urgent")
    page.get_by_label("Guardians of 7a").check()
    page.get_by_label("Add people").press_sequentially("t7b")
    page.locator("#people-results").get_by_role("button", name="Add").click()
    expect(count(page)).to_have_text("4")

    page.reload()
    expect(page.get_by_label("Title")).to_have_value("Half-written")
    expect(page.get_by_label("Message")).to_have_value("Words I do not want to type again")
    expect(page.get_by_label("Priority")).to_have_value("urgent")
    expect(page.get_by_label("Guardians of 7a")).to_be_checked()
    expect(page.locator("#chosen-people")).to_contain_text("T7B")
    expect(count(page)).to_have_text("4")  # the preview follows the restored draft
    expect(page.locator("#alert-preview .schoolbell-title")).to_have_text("Half-written")
    assert console_errors == []


def test_an_emergency_is_confirmed_before_it_goes(
    page: Page, browser: Browser, live_school, artifacts, console_errors
):
    url, school = live_school.server.url, live_school.school
    student, student_errors = second_person(browser, url, school.emails["s7b_1"])
    sign_in(page, url, school.emails["admin"])
    page.goto(url + "/notifications/new")
    page.get_by_label("Title").press_sequentially("Lockdown drill")
    page.get_by_label("Message").press_sequentially("Stay in your classroom.")
    page.get_by_label("Priority").select_option("emergency")
    page.get_by_label("Requires confirmation").check()
    page.get_by_label("Students of 7b").check()
    expect(count(page)).to_have_text("3")
    page.get_by_role("button", name="Send").click()

    question = page.get_by_role("alertdialog")
    expect(question).to_contain_text("Send this emergency alert to 3 people?")
    page.screenshot(path=artifacts / "dashboard-confirm.png", full_page=True)
    expect(student.locator(".schoolbell-overlay")).to_have_count(0)  # nothing sent yet
    page.get_by_role("button", name="Yes, send now").click()
    expect(page).to_have_url(re.compile(r"/notifications/\d+$"))
    overlay = student.get_by_role("alertdialog")
    expect(overlay).to_contain_text("Lockdown drill")
    student.screenshot(path=artifacts / "dashboard-emergency.png")
    assert console_errors == [] and student_errors == []
