"""The OpenAPI document at /api/v1/openapi.json: valid OpenAPI 3.1, in step with the
app's routes (a forgotten endpoint fails), and true of a real gunicorn server, as
schemathesis sees it (no 5xx, no status, header, content type or body outside it)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from webapp import errors
from webapp.api import openapi

from .conftest import make_test_app
from .school import build_school

DOCUMENT = "/api/v1/openapi.json"
# Bounded so a run takes about a minute on this machine (one per backend); the seed and the
# deterministic mode make it the same run every time.
SCHEMATHESIS_MAX_EXAMPLES = 60
SCHEMATHESIS_SEED = 20260901
SCHEMATHESIS_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


def served(client) -> dict:
    """The document as the app serves it, to anyone (no credentials)."""
    response = client.get(DOCUMENT)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def test_the_document_is_valid_openapi_3_1(client):
    document = served(client)
    assert document["openapi"].startswith("3.1.")
    OpenAPIV31SpecValidator(document).validate()  # raises on the first error
    assert list(OpenAPIV31SpecValidator(document).iter_errors()) == []


def test_every_api_route_is_described_with_its_methods_and_nothing_more(app, client):
    routes = {
        (openapi.openapi_path(rule)[0], method)
        for rule in openapi.api_rules(app)
        for method in openapi.rule_methods(rule)
    }
    described = {
        (path, method)
        for path, item in served(client)["paths"].items()
        for method in item
        if method in {"get", "put", "post", "patch", "delete"}
    }
    assert routes - described == set(), "routes under /api/v1 that the document leaves out"
    assert described - routes == set(), "operations in the document that the app lacks"
    assert ("/notifications/{notification_id}", "patch") in described


def test_every_description_names_a_route_of_the_app(app):
    methods = {
        (rule.endpoint, method)
        for rule in openapi.api_rules(app)
        for method in openapi.rule_methods(rule)
    }
    assert set(openapi.OPERATIONS) - methods == set(), "descriptions of no route"


def test_error_responses_are_the_catalogue_shape_with_its_codes(client):
    document = served(client)
    answered = {(entry.code, entry.status) for entry in errors.CATALOGUE}
    send = document["paths"]["/notifications"]["post"]["responses"]
    for status, response in send.items():
        if status.startswith(("4", "5")):
            pinned = response["content"]["application/json"]["schema"]["allOf"][1]
            for code in pinned["properties"]["error"]["properties"]["code"]["enum"]:
                assert (code, int(status)) in answered, code
    assert "title_required" in send["400"]["description"]
    assert "WWW-Authenticate" in send["401"]["headers"]
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]


def test_a_real_error_matches_its_description(client):
    """No credentials: 401, with the code and header the document promises."""
    document = served(client)
    response = client.get("/api/v1/presence")
    described = document["paths"]["/presence"]["get"]["responses"]["401"]
    code = response.get_json()["error"]["code"]
    assert response.status_code == 401
    assert (
        code
        in described["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"][
            "properties"
        ]["code"]["enum"]
    )
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.fixture
def api_server(any_database_url, tmp_path, live_server_factory):
    """A real gunicorn server over a small school (SQLite, then PostgreSQL) with a few
    announcements (ids 1-3: an emergency asking for confirmation, a normal one, a
    scheduled one), so that generated ids find real rows too. The API rate limit is
    raised: schemathesis sends far more than 1,200 requests a minute."""
    from .school import Api

    app = make_test_app(any_database_url, tmp_path)
    school = build_school(app)
    app.extensions["schoolbell.db"].kw["bind"].dispose()
    server = live_server_factory(
        any_database_url, API_RATE_LIMIT="1000000 per minute", JOBS_IN_PROCESS="false"
    )
    api = Api(server.url, school.api_token)
    api.send(
        "Fire drill",
        "Leave by the **east** exit.",
        priority="emergency",
        require_ack=True,
        targets={"classes": ["7a", "7b"]},
    )
    api.send("Trip", "Bring lunch.", require_ack=True, targets={"users": [school.emails["s7b_1"]]})
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    api.send("Later", "Next month.", send_at=later, targets={"roles": ["teacher"]})
    return server, school


@pytest.mark.timeout(400)
def test_schemathesis_finds_no_server_error_and_nothing_outside_the_document(api_server, tmp_path):
    server, school = api_server
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        server.url + DOCUMENT,
        "--header",
        f"Authorization: Bearer {school.api_token}",
        "--checks",
        ",".join(SCHEMATHESIS_CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(SCHEMATHESIS_MAX_EXAMPLES),
        "--seed",
        str(SCHEMATHESIS_SEED),
        "--generation-deterministic",  # derandomized; implies no example database
        "--workers",
        "1",
        "--request-timeout",
        "15",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=360, cwd=tmp_path, check=False
    )
    output = run.stdout + run.stderr
    if run.returncode != 0:
        print(output)  # pytest shows it under "Captured stdout call"
        pytest.fail("schemathesis found problems; its report is in the captured stdout")
    assert "No issues found" in output or " passed" in output, output[-5_000:]
    assert "Traceback" not in server.log(), server.log()[-5_000:]
