"""/api/docs in a real Chromium against a real gunicorn + gevent server: the vendored
Swagger UI draws every operation of /api/v1/openapi.json under the app's strict
Content-Security-Policy, with nothing refused and nothing fetched from elsewhere."""

from __future__ import annotations

import json
import urllib.request

import pytest
from playwright.sync_api import Page, expect

from .browser import sign_in

pytestmark = pytest.mark.browser


def test_the_api_page_shows_every_operation_under_the_strict_policy(
    page: Page, live_school, console_errors, artifacts
):
    url = live_school.server.url
    with urllib.request.urlopen(url + "/api/v1/openapi.json", timeout=10) as response:
        document = json.load(response)
    operations = [
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    ]
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda request: None if request.url.startswith(url) else elsewhere.append(request.url),
    )

    response = page.goto(url + "/api/docs")
    assert response is not None and response.status == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe" not in policy

    expect(page.get_by_role("heading", name="Schoolbell API")).to_be_visible()
    blocks = page.locator(".opblock")
    expect(blocks).to_have_count(len(operations))
    for method, path in operations:
        block = page.locator(f".opblock-{method.lower()}").filter(
            has=page.locator(f'.opblock-summary-path[data-path="{path}"]')
        )
        expect(block).to_have_count(1)

    # Opening one shows its request body, responses and error codes.
    send = page.locator('.opblock-post:has(.opblock-summary-path[data-path="/notifications"])')
    send.locator(".opblock-summary").click()
    expect(send.get_by_text("idempotency_key_reused").first).to_be_visible()
    page.screenshot(path=artifacts / "api-docs.png", full_page=False)

    assert console_errors == []
    assert elsewhere == []


def test_try_it_out_works_with_the_signed_in_session_and_its_csrf_token(
    page: Page, live_school, console_errors
):
    """An administrator signed in to Schoolbell tries POST /classes from the page: the
    session is the credential, and the page adds the CSRF token the API asks for."""
    url = live_school.server.url
    sign_in(page, url, live_school.school.emails["admin"])
    page.goto(url + "/api/docs")
    create = page.locator('.opblock-post:has(.opblock-summary-path[data-path="/classes"])')
    create.locator(".opblock-summary").click()
    create.get_by_role("button", name="Try it out").click()
    create.locator("textarea.body-param__text").fill('{"name": "8c"}')
    create.get_by_role("button", name="Execute").click()

    status = create.locator(".live-responses-table tbody .response-col_status")
    expect(status).to_have_text("201")
    code, body = live_school.api.call("POST", "/classes", {"name": "8c"})  # it exists now
    assert (code, body["error"]["code"]) == (409, "duplicate_class")
    assert console_errors == []
