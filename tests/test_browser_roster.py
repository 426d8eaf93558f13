"""The roster pages in a real Chromium against a real gunicorn + gevent server."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from .browser import sign_in

pytestmark = pytest.mark.browser


def menu(page: Page, name: str):
    """A link of the main navigation."""
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def test_admin_creates_a_class_and_adds_a_student(
    page: Page, live_server_factory, database_url, make_user, artifacts, console_errors
):
    make_user("admin", email="ada@school.test", name="Ada Admin")
    make_user("student", email="sam@school.test", name="Sam Student")
    server = live_server_factory(database_url)
    sign_in(page, server.url, "ada@school.test")
    expect(menu(page, "Classes")).to_be_visible()

    menu(page, "Classes").click()
    page.get_by_label("Class name").fill("7b")
    page.get_by_role("button", name="Create class").click()
    expect(page.get_by_role("heading", name="Class 7b")).to_be_visible()
    expect(page.locator("#students")).to_contain_text("No students yet.")

    page.get_by_label("Email of a student or teacher").fill("sam@school.test")
    page.get_by_role("button", name="Add to 7b").click()
    expect(page.get_by_role("status")).to_contain_text("Added Sam Student to 7b as a student.")
    expect(page.locator("#students")).to_contain_text("Sam Student")
    expect(page.locator("#students")).to_contain_text("sam@school.test")
    page.screenshot(path=artifacts / "roster-class.png", full_page=True)

    menu(page, "Classes").click()
    expect(page.locator("#class-list tbody tr")).to_have_count(1)
    expect(page.locator("#class-list tbody tr")).to_contain_text("7b")
    assert console_errors == []


def test_people_search_updates_as_you_type(
    page: Page, live_server_factory, database_url, make_user, artifacts, console_errors
):
    make_user("admin", email="ada@school.test", name="Ada Admin")
    for email, name, role in [
        ("zoe@school.test", "Zoë Zimmer", "student"),
        ("zack@school.test", "Zack Young", "teacher"),
        ("mia@school.test", "Mia Miller", "guardian"),
    ]:
        make_user(role, email=email, name=name, password=None)
    server = live_server_factory(database_url)
    sign_in(page, server.url, "ada@school.test")
    menu(page, "People").click()
    rows = page.locator("#user-results tbody tr")
    expect(rows).to_have_count(4)

    page.get_by_label("Search by name or email").press_sequentially("z", delay=50)
    expect(rows).to_have_count(2)  # Zoë and Zack, with no button pressed
    page.get_by_label("Role").select_option("teacher")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Zack Young")
    expect(page).to_have_url(re.compile(r"/roster/users\?q=z&role=teacher$"))
    page.screenshot(path=artifacts / "roster-search.png", full_page=True)

    page.reload()  # the pushed URL is a real page
    expect(page.get_by_label("Search by name or email")).to_have_value("z")
    expect(rows).to_have_count(1)
    assert console_errors == []
