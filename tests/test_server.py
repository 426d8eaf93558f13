"""The real thing: gunicorn with the gevent worker, spoken to over HTTP."""

import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request

from .conftest import PASSWORD
from .helpers import csrf_token_from


class Browserish:
    """An HTTP client with a cookie jar that does not follow redirects."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), self._NoRedirect
        )

    def request(self, path: str, data: dict | None = None):
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            response = self.opener.open(self.base_url + path, data=body, timeout=10)
        except urllib.error.HTTPError as error:
            response = error
        with response:
            return response.status, dict(response.headers), response.read().decode()


def test_signin_over_http_on_gunicorn_gevent(live_server_factory, database_url, make_user):
    make_user("teacher", email="t@school.test", name="Tess Teacher")
    server = live_server_factory(database_url)
    browser = Browserish(server.url)

    status, _, page = browser.request("/signin")
    assert status == 200
    token = csrf_token_from(page)

    status, headers, _ = browser.request(
        "/signin", {"csrf_token": token, "email": "t@school.test", "password": PASSWORD}
    )
    assert status == 302 and headers["Location"] == "/dashboard"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie

    status, _, page = browser.request("/dashboard")
    assert status == 200 and "Tess Teacher" in page

    status, _, page = browser.request("/static/vendor/htmx-2.0.11.min.js")
    assert status == 200 and "2.0.11" in page


def test_healthz_and_json_errors_on_gunicorn(live_server_factory, database_url):
    server = live_server_factory(database_url)
    browser = Browserish(server.url)
    status, _headers, body = browser.request("/healthz")
    assert status == 200
    assert json.loads(body) == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok"},
        "broker": {"kind": "memory", "state": "ok"},
    }
    status, _, body = browser.request("/api/v1/nothing-here")
    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"


def test_access_log_never_shows_query_strings_or_link_tokens(live_server_factory, database_url):
    server = live_server_factory(database_url)
    browser = Browserish(server.url)
    browser.request("/signin?token=eyJsecret.jwt.value")
    browser.request("/l/open/WzEsMiwibm9uY2UiXQ.secret.link-token")
    server.stop()
    log = server.log()
    assert "GET /signin" in log
    assert "eyJsecret" not in log
    assert '"GET /l/open/*** HTTP/1.1" 400' in log
    assert "WzEsMiwibm9uY2UiXQ" not in log
