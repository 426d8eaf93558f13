"""The error catalogue (webapp/errors.py): every code written once, raised through its
entry, documented in docs/errors.md, and answered by the handlers as the API promises."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest
from werkzeug.exceptions import Gone, MethodNotAllowed, NotFound

from webapp import errors
from webapp.errors import ErrorCode, OnSocket

ROOT = Path(__file__).resolve().parent.parent
WEBAPP = ROOT / "webapp"
DOCS = ROOT / "docs" / "errors.md"
CODES = {entry.code for entry in errors.CATALOGUE}


def where(entry: ErrorCode) -> str:
    """How docs/errors.md names an entry's status: 404, `any`, `error message`, ..."""
    return "any" if entry.status is None else str(entry.status)


def test_every_code_is_written_once():
    """A code's further wordings derive from its first entry (`saying`)."""
    tree = ast.parse((WEBAPP / "errors.py").read_text())
    written = Counter(
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "ErrorCode"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    )
    assert set(written) == CODES
    assert [code for code, times in written.items() if times > 1] == []


def documented() -> set[tuple[str, str]]:
    """(code, status) of every table row of docs/errors.md."""
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+?) \|", DOCS.read_text(), re.MULTILINE)
    return set(rows)


def test_the_docs_list_every_code_with_its_status():
    in_catalogue = {(entry.code, where(entry)) for entry in errors.CATALOGUE}
    assert sorted(in_catalogue - documented()) == [], "missing from docs/errors.md"


def test_the_docs_list_no_code_the_catalogue_lacks():
    in_catalogue = {(entry.code, where(entry)) for entry in errors.CATALOGUE}
    assert sorted(documented() - in_catalogue) == [], "in docs/errors.md, not in the catalogue"


def test_the_readme_and_the_protocol_link_the_codes():
    assert "docs/errors.md" in (ROOT / "README.md").read_text()
    assert "(errors.md)" in (ROOT / "docs" / "protocol.md").read_text()


def code_literals(path: Path) -> list[tuple[int, str]]:
    """Strings in `path` that are a catalogue code, or passed as `code=`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and node.value in CODES:
            found.append((node.lineno, node.value))
        elif (
            isinstance(node, ast.keyword)
            and node.arg == "code"
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            found.append((node.lineno, f"code={node.value.value!r}"))
    return found


def test_no_code_is_written_as_a_string_outside_the_catalogue():
    found = {
        f"{path.relative_to(ROOT)}:{line}": literal
        for path in sorted(WEBAPP.rglob("*.py"))
        if path.name != "errors.py"
        for line, literal in code_literals(path)
    }
    assert found == {}


@pytest.mark.parametrize(
    ("entry", "exception"),
    [
        (errors.TITLE_REQUIRED, errors.ValidationFailed),
        (errors.INVALID_TOKEN, errors.NotAuthenticated),
        (errors.ADMINS_ONLY, errors.Forbidden),
        (errors.NOT_LINKED, errors.NotFound),
        (errors.DUPLICATE_CLASS, errors.Conflict),
        (errors.SIGNIN_BUSY, errors.Busy),
        (errors.JSON_BODY_REQUIRED, errors.DomainError),  # 415: no class of its own
    ],
)
def test_an_entry_raises_the_exception_of_its_status(entry, exception):
    error = entry.error(name="7b")
    assert type(error) is exception
    assert (error.code, error.status, error.kind) == (entry.code, entry.status, entry)


def test_an_entry_fills_its_wording_with_named_fields():
    error = errors.TITLE_TOO_LONG.error(max=200)
    assert error.message == str(error) == "Titles are at most 200 characters."
    assert errors.USER_ID_NOT_FOUND.format(user_id=5) == "No user with id 5."
    assert errors.INVALID_EMAIL.format(email="x", reason="no @") == (
        "'x' is not a valid email address: no @"
    )


def test_the_wordings_of_a_code_are_one_code():
    assert errors.USER_ID_NOT_FOUND == errors.USER_NOT_FOUND
    assert errors.USER_ID_NOT_FOUND.message != errors.USER_NOT_FOUND.message
    assert {errors.USER_NOT_FOUND: "email"}.get(errors.USERS_NOT_FOUND) == "email"
    assert errors.TOO_MANY_TABS.status == 429 != errors.TOO_MANY_CONNECTIONS.status


@pytest.mark.parametrize(
    "make",
    [
        lambda: errors.UNKNOWN_TYPE.error(type="x"),  # a socket's `error` message
        lambda: errors.AUTH_REQUIRED.error(),  # a close reason
        lambda: errors.HTTP_ERROR.error(description="x"),  # Werkzeug's, any status
        lambda: errors.ValidationFailed(errors.NOT_LINKED),  # a 404 is not a 400
    ],
)
def test_an_exception_only_carries_an_http_entry_of_its_status(make):
    with pytest.raises(TypeError):
        make()


def test_socket_entries_say_where_they_are_used():
    assert errors.UNKNOWN_TYPE.status is OnSocket.ERROR
    assert errors.NOT_JSON.status is OnSocket.ERROR
    assert errors.INVALID_JSON.status == 400  # the same code, on the API
    assert errors.AUTH_TIMEOUT.status is OnSocket.CLOSE


@pytest.fixture
def raising_app(app):
    """The test app with routes that raise what the handlers must answer."""

    def gone():
        raise Gone()

    def crash():
        raise RuntimeError("a bug")

    def busy():
        raise errors.Busy(errors.SIGNIN_BUSY, retry_after_s=7)

    app.add_url_rule("/api/v1/test-gone", view_func=gone)
    app.add_url_rule("/api/v1/test-crash", view_func=crash)
    app.add_url_rule("/api/v1/test-busy", view_func=busy)
    return app


def error_of(response) -> tuple[int, str, str]:
    body = response.get_json()["error"]
    return response.status_code, body["code"], body["message"]


def test_werkzeug_errors_keep_their_description(raising_app):
    client = raising_app.test_client()
    assert error_of(client.get("/api/v1/nothing-here")) == (
        404,
        "not_found",
        NotFound.description,
    )
    assert error_of(client.get("/signout", headers={"Accept": "application/json"})) == (
        405,
        "method_not_allowed",
        MethodNotAllowed.description,
    )
    assert error_of(client.get("/api/v1/test-gone")) == (410, "http_error", Gone.description)


def test_a_crash_is_a_logged_internal_error(raising_app, caplog):
    response = raising_app.test_client().get("/api/v1/test-crash")
    assert error_of(response) == (500, "internal_error", errors.INTERNAL_ERROR.message)
    assert "unhandled error on GET /api/v1/test-crash" in caplog.text


def test_busy_says_when_to_come_back(raising_app):
    response = raising_app.test_client().get("/api/v1/test-busy")
    assert error_of(response) == (503, "signin_busy", errors.SIGNIN_BUSY.message)
    assert response.headers["Retry-After"] == "7"
