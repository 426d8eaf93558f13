"""Small helpers shared by the tests: CSRF tokens from pages, form posts, signing in to a
live server."""

from __future__ import annotations

import re
import time

CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
CSRF_HEADER = re.compile(r'"X-CSRFToken": "([^"]+)"')


def csrf_token_from(html: str) -> str:
    """The CSRF token a page carries (form field or htmx header)."""
    match = CSRF_INPUT.search(html) or CSRF_HEADER.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


def post_form(client, url: str, data: dict, *, page: str | None = None, **kwargs):
    """GET `page` (default `url`) for its CSRF token, then POST `data` to `url`."""
    token = csrf_token_from(client.get(page or url).get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **data}, **kwargs)


def signed_in(server_url: str, email: str):
    """A cookie-keeping HTTP client (test_server.Browserish) signed in on a live server
    through the real form."""
    from .conftest import PASSWORD
    from .test_server import Browserish

    browser = Browserish(server_url)
    _, _, page = browser.request("/signin")
    status, _, _ = browser.request(
        "/signin", {"csrf_token": csrf_token_from(page), "email": email, "password": PASSWORD}
    )
    assert status == 302, status
    return browser


def deactivate(admin, user_id: int) -> int:
    """Deactivate a person through the roster's form as a signed-in admin (a Browserish);
    returns the HTTP status."""
    _, _, page = admin.request(f"/roster/users/{user_id}/edit")
    status, _, _ = admin.request(
        f"/roster/users/{user_id}/deactivate", {"csrf_token": csrf_token_from(page)}
    )
    return status


def session_cookie(browser) -> str:
    """The Cookie header a signed-in Browserish would send."""
    return "; ".join(f"{c.name}={c.value}" for c in browser.jar)


def wait_for(predicate, timeout: float = 5, interval: float = 0.05):
    """Poll until predicate() is truthy; return its value or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
