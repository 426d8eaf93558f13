"""The JSON API at /api/v1, as an integrator (Bearer token) or a browser (session) sees it."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest
from sqlalchemy import func, select

from webapp import tokens
from webapp.db import get_session, utcnow
from webapp.models import ApiToken, AuditEvent, Guardianship, Membership, SchoolClass, User
from webapp.services import api_tokens
from webapp.services import classes as classes_service
from webapp.services import users as users_service

from .conftest import PASSWORD, make_test_app
from .helpers import csrf_token_from

API = "/api/v1"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def new_api_token(app, owner_id: int, name: str = "integration") -> str:
    """Create an API token acting as the user `owner_id`; return its secret."""
    with app.app_context():
        session = get_session()
        _token, secret = api_tokens.create(session, name, users_service.get(session, owner_id))
        return secret


def count(app, model, *where) -> int:
    """Rows of `model` (matching `where`) in the app's database."""
    with app.app_context():
        return get_session().scalar(select(func.count()).select_from(model).where(*where))


class Api:
    """The test client with an API token: api.post("/users", json={...})."""

    def __init__(self, client, token: str):
        self.client, self.token = client, token

    def get(self, path: str, **kwargs):
        return self.client.get(API + path, headers=bearer(self.token), **kwargs)

    def post(self, path: str, **kwargs):
        return self.client.post(API + path, headers=bearer(self.token), **kwargs)


@pytest.fixture
def owner(make_user):
    """The administrator the API token acts as."""
    return make_user("admin", email="owner@school.test", name="Olive Owner")


@pytest.fixture
def token(app, owner) -> str:
    return new_api_token(app, owner.id)


@pytest.fixture
def api(client, token) -> Api:
    return Api(client, token)


@pytest.fixture
def class_7b(app):
    with app.app_context():
        return classes_service.create(get_session(), None, "7b")


def error_of(response) -> dict:
    """The `error` object of a JSON error response."""
    assert response.is_json, response.get_data(as_text=True)
    return response.get_json()["error"]


def student_body(**changes) -> dict:
    body = {
        "email": "Ann.Lee@School.test",
        "name": "Ann  Lee",
        "role": "student",
        "classes": ["7B"],
    }
    return {**body, **changes}


# --- health ---------------------------------------------------------------------------


def test_healthz_reports_the_database_and_the_broker(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok"},
        "broker": {"kind": "memory", "state": "ok"},
    }


def test_api_requests_are_limited_per_token_with_a_json_429(app, client, owner):
    app.config["API_RATE_LIMIT"] = "3 per minute"
    first, second = new_api_token(app, owner.id, "first"), new_api_token(app, owner.id, "other")
    statuses = [client.get(API + "/presence", headers=bearer(first)).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    refused = client.get(API + "/presence", headers=bearer(first))
    assert refused.status_code == 429
    assert error_of(refused)["code"] == "rate_limited"
    assert "Too many requests" in error_of(refused)["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    # Another token (another integration) is not held back by the first.
    assert client.get(API + "/presence", headers=bearer(second)).status_code == 200


# --- authentication -------------------------------------------------------------------

ENDPOINTS = [
    ("get", "/users/owner@school.test", None),
    ("post", "/users", {"email": "x@school.test", "name": "X", "role": "teacher"}),
    ("post", "/classes", {"name": "8c"}),
    ("post", "/tokens", {"email": "owner@school.test"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_request_without_credentials_is_401(client, owner, method, path, body):
    r = getattr(client, method)(API + path, json=body)
    assert r.status_code == 401
    assert error_of(r)["code"] == "not_authenticated"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def _revoke(app, secret):
    with app.app_context():
        session = get_session()
        session.scalar(
            select(ApiToken).where(ApiToken.token_hash == tokens.hash_api_token(secret))
        ).revoked_at = utcnow()
        session.commit()


def _deactivate_owner(app, secret):
    with app.app_context():
        session = get_session()
        other = users_service.create(
            session,
            None,
            users_service.UserInput(email="second@school.test", name="Second Admin", role="admin"),
        )
        owner = users_service.get_by_email(session, "owner@school.test")
        users_service.set_active(session, other, owner.id, False)


REFUSED_HEADERS = {
    "unknown token": lambda app, secret: bearer("sbk_" + "x" * 43),
    "empty bearer": lambda app, secret: {"Authorization": "Bearer "},
    "basic scheme": lambda app, secret: {"Authorization": f"Basic {secret}"},
    "bare token": lambda app, secret: {"Authorization": secret},
    "revoked": lambda app, secret: _revoke(app, secret) or bearer(secret),
    "owner deactivated": lambda app, secret: _deactivate_owner(app, secret) or bearer(secret),
}


@pytest.mark.parametrize("case", REFUSED_HEADERS)
@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_refused_token_is_401_and_changes_nothing(app, client, token, case, method, path, body):
    headers = REFUSED_HEADERS[case](app, token)
    r = getattr(client, method)(API + path, json=body, headers=headers)
    assert r.status_code == 401
    assert error_of(r)["code"] == "invalid_token"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert count(app, SchoolClass) == 0
    assert count(app, User, User.email == "x@school.test") == 0
    assert count(app, AuditEvent, AuditEvent.action == "client_token.issued") == 0


def test_signed_in_admin_can_read_without_a_token(client, admin):
    r = client.get(f"{API}/users/admin@school.test")
    assert r.status_code == 200
    assert r.get_json()["role"] == "admin"


def test_session_post_without_csrf_token_is_refused(app, client, admin):
    r = client.post(f"{API}/classes", json={"name": "8c"})
    assert r.status_code == 400
    assert error_of(r)["code"] == "csrf_failed"
    assert count(app, SchoolClass) == 0


def test_session_post_with_csrf_header_works(app, client, admin):
    csrf = csrf_token_from(client.get("/dashboard").get_data(as_text=True))
    r = client.post(f"{API}/classes", json={"name": "8c"}, headers={"X-CSRFToken": csrf})
    assert r.status_code == 201
    assert count(app, SchoolClass, SchoolClass.name == "8c") == 1


def test_bearer_request_needs_no_csrf_token_even_with_a_session(app, client, admin, token):
    r = client.post(f"{API}/classes", json={"name": "8c"}, headers=bearer(token))
    assert r.status_code == 201


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_signed_in_teacher_is_forbidden(client, make_user, auth, owner, method, path, body):
    teacher = make_user("teacher")
    auth.signin(teacher.email)
    csrf = csrf_token_from(client.get("/dashboard").get_data(as_text=True))
    r = getattr(client, method)(API + path, json=body, headers={"X-CSRFToken": csrf})
    assert r.status_code == 403
    assert error_of(r)["code"] == "forbidden"


def test_token_never_reaches_the_logs(app, api, client, token, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "sbk_" + "w" * 43
    api.get("/users/owner@school.test")
    api.post("/tokens", json={"email": "owner@school.test"})
    client.get(f"{API}/users/owner@school.test", headers=bearer(wrong))
    client.get(f"{API}/users/owner@school.test?token={wrong}")
    assert token not in caplog.text
    assert wrong not in caplog.text
    with app.app_context():
        details = [
            str(e.detail) + str(e.subject) for e in get_session().scalars(select(AuditEvent))
        ]
    assert not any(token in detail for detail in details)


# --- users ----------------------------------------------------------------------------


def test_create_student_in_a_class(api, class_7b):
    r = api.post("/users", json=student_body())
    assert r.status_code == 201, r.get_json()
    user = r.get_json()
    assert r.headers["Location"].endswith(f"{API}/users/ann.lee@school.test")
    assert user == {
        "id": user["id"],
        "email": "ann.lee@school.test",
        "name": "Ann Lee",
        "role": "student",
        "language": None,  # not chosen: the browser's language decides
        "active": True,
        "classes": [{"name": "7b", "role": "student"}],
        "guardian_of": [],
        "created_at": user["created_at"],
    }
    assert datetime.fromisoformat(user["created_at"]).utcoffset().total_seconds() == 0
    assert api.get("/users/ann.lee@school.test").get_json() == user
    assert api.client.get(r.headers["Location"], headers=bearer(api.token)).get_json() == user


def test_create_guardian_of_students(api, class_7b):
    api.post("/users", json=student_body())
    api.post("/users", json=student_body(email="ben@school.test", name="Ben Lee"))
    r = api.post(
        "/users",
        json={
            "email": "pat@home.test",
            "name": "Pat Lee",
            "role": "guardian",
            "language": "de",
            "guardian_of": ["ANN.LEE@school.test", "ben@school.test"],
        },
    )
    assert r.status_code == 201
    assert r.get_json()["language"] == "de"
    assert sorted(r.get_json()["guardian_of"]) == ["ann.lee@school.test", "ben@school.test"]
    assert r.get_json()["classes"] == []


def test_created_user_with_password_can_sign_in(api, auth):
    r = api.post(
        "/users",
        json={
            "email": "tom@school.test",
            "name": "Tom Teacher",
            "role": "teacher",
            "password": PASSWORD,
        },
    )
    assert r.status_code == 201
    signin = auth.signin("tom@school.test", PASSWORD)
    assert signin.status_code == 302 and signin.headers["Location"] == "/dashboard"


def test_get_unknown_user_is_404(api):
    r = api.get("/users/nobody@school.test")
    assert r.status_code == 404
    assert error_of(r)["code"] == "user_not_found"


def test_duplicate_email_is_409(api, owner):
    r = api.post("/users", json={"email": "OWNER@school.test", "name": "Again", "role": "teacher"})
    assert r.status_code == 409
    assert error_of(r)["code"] == "duplicate_email"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"email": "not-an-email"}, "invalid_email"),
        ({"role": "janitor"}, "invalid_role"),
        ({"name": "   "}, "name_required"),
        ({"password": "short"}, "weak_password"),
        ({"language": "xx"}, "invalid_language"),
    ],
)
def test_invalid_user_values_are_400(api, class_7b, changes, code):
    r = api.post("/users", json=student_body(**changes))
    assert r.status_code == 400
    assert error_of(r)["code"] == code


# --- one transaction ------------------------------------------------------------------


@pytest.fixture
def school(any_database_url, tmp_path):
    """An app on each backend with a class 7b, a student, a teacher and an API token."""
    app = make_test_app(any_database_url, tmp_path)
    with app.app_context():
        session = get_session()
        owner = users_service.create(
            session,
            None,
            users_service.UserInput(email="owner@school.test", name="Olive Owner", role="admin"),
        )
        classes_service.create(session, None, "7b")
        for role in ("student", "teacher"):
            users_service.create(
                session,
                None,
                users_service.UserInput(email=f"{role}@school.test", name=role.title(), role=role),
            )
        owner_id = owner.id
    yield app, Api(app.test_client(), new_api_token(app, owner_id))
    app.extensions["schoolbell.db"].kw["bind"].dispose()


FAILED_CREATES = [
    (student_body(classes=["7b", "9z"]), 404, "class_not_found"),
    (
        {
            "email": "g@home.test",
            "name": "G",
            "role": "guardian",
            "guardian_of": ["student@school.test", "teacher@school.test"],
        },
        400,
        "not_a_student",
    ),
    (
        {
            "email": "g@home.test",
            "name": "G",
            "role": "guardian",
            "guardian_of": ["student@school.test", "nobody@school.test"],
        },
        404,
        "user_not_found",
    ),
    (
        {"email": "g@home.test", "name": "G", "role": "guardian", "classes": ["7b"]},
        400,
        "invalid_member",
    ),
    (student_body(guardian_of=["student@school.test"]), 400, "not_a_guardian"),
]


@pytest.mark.parametrize(("body", "status", "code"), FAILED_CREATES)
def test_failed_create_writes_nothing(school, body, status, code):
    app, api = school
    before = [count(app, model) for model in (User, Membership, Guardianship, AuditEvent)]
    r = api.post("/users", json=body)
    assert r.status_code == status
    assert error_of(r)["code"] == code
    assert [count(app, model) for model in (User, Membership, Guardianship, AuditEvent)] == before
    assert api.get(f"/users/{body['email']}").status_code == 404


# --- request bodies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b'{"email": ', "application/json", 400, "invalid_json"),
        (b"", "application/json", 400, "invalid_json"),
        (b'["7b"]', "application/json", 400, "invalid_json"),
        (b"null", "application/json", 400, "invalid_json"),
        (b'{"name": "8c"}', "text/plain", 415, "unsupported_media_type"),
        (b"name=8c", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
@pytest.mark.parametrize("path", ["/users", "/classes", "/tokens"])
def test_body_that_is_not_a_json_object_is_refused(
    app, api, path, data, content_type, status, code
):
    r = api.post(path, data=data, content_type=content_type)
    assert r.status_code == status
    assert error_of(r)["code"] == code
    assert count(app, SchoolClass) == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/users",
            {
                "email": "a@school.test",
                "name": "A",
                "role": "student",
                "admin": True,
                "nickname": "x",
            },
        ),
        ("/classes", {"name": "8c", "admin": True, "nickname": "x"}),
        ("/tokens", {"email": "owner@school.test", "admin": True, "nickname": "x"}),
    ],
)
def test_unknown_fields_are_named(app, api, path, body):
    r = api.post(path, json=body)
    assert r.status_code == 400
    error = error_of(r)
    assert error["code"] == "unknown_field"
    assert error["details"] == {"fields": ["admin", "nickname"]}
    assert "admin" in error["message"] and "nickname" in error["message"]
    assert count(app, User) == 1 and count(app, SchoolClass) == 0


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/users", student_body(name=5), "name"),
        ("/users", student_body(email=["a@school.test"]), "email"),
        ("/users", student_body(role=None), "role"),
        ("/users", {"name": "No Email", "role": "student"}, "email"),
        ("/users", student_body(password=12345678), "password"),
        ("/users", student_body(classes="7b"), "classes"),
        ("/users", student_body(classes=[7]), "classes"),
        ("/users", student_body(guardian_of="ann@school.test"), "guardian_of"),
        ("/users", student_body(language=True), "language"),
        ("/classes", {"name": 7}, "name"),
        ("/classes", {}, "name"),
        ("/tokens", {"email": {"address": "owner@school.test"}}, "email"),
    ],
)
def test_wrong_types_name_the_field(app, api, class_7b, path, body, field):
    r = api.post(path, json=body)
    assert r.status_code == 400
    error = error_of(r)
    assert error["code"] == "validation_failed"
    assert error["details"] == {"field": field}
    assert repr(field) in error["message"]
    assert count(app, User) == 1


# --- classes --------------------------------------------------------------------------


def test_create_class(api):
    r = api.post("/classes", json={"name": "  8C "})
    assert r.status_code == 201
    body = r.get_json()
    assert body == {"id": body["id"], "name": "8c", "created_at": body["created_at"]}
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None


def test_duplicate_class_is_409(api, class_7b):
    r = api.post("/classes", json={"name": "7B"})
    assert r.status_code == 409
    assert error_of(r)["code"] == "duplicate_class"


@pytest.mark.parametrize("name", ["", "   ", "!!", "x" * 65])
def test_invalid_class_name_is_400(app, api, name):
    r = api.post("/classes", json={"name": name})
    assert r.status_code == 400
    assert error_of(r)["code"] == "invalid_class_name"
    assert count(app, SchoolClass) == 0


# --- client tokens --------------------------------------------------------------------


def test_issue_client_token(app, api, make_user):
    ann = make_user("student", email="ann@school.test")
    r = api.post("/tokens", json={"email": "ANN@school.test"})
    assert r.status_code == 201
    body = r.get_json()
    assert set(body) == {"token", "expires_at"}
    assert (
        tokens.verify_client_token(
            body["token"],
            secret=app.config["JWT_SECRET"],
            issuer=app.config["JWT_ISSUER"],
            audience=app.config["JWT_AUDIENCE"],
        )
        == ann.id
    )
    lifetime = datetime.fromisoformat(body["expires_at"]) - utcnow()
    assert 0 < lifetime.total_seconds() <= app.config["JWT_TTL_S"]


def test_token_for_unknown_user_is_404(api):
    r = api.post("/tokens", json={"email": "nobody@school.test"})
    assert r.status_code == 404
    assert error_of(r)["code"] == "user_not_found"


def test_token_for_inactive_user_is_400(app, api, make_user):
    make_user("student", email="gone@school.test", active=False)
    r = api.post("/tokens", json={"email": "gone@school.test"})
    assert r.status_code == 400
    assert error_of(r)["code"] == "user_inactive"
    assert count(app, AuditEvent, AuditEvent.action == "client_token.issued") == 0


# --- audit ----------------------------------------------------------------------------


def test_writes_are_audited_with_actor_and_address(app, client, token, owner, class_7b):
    remote = {"REMOTE_ADDR": "203.0.113.7"}
    for path, body in [
        ("/classes", {"name": "8c"}),
        ("/users", student_body()),
        ("/tokens", {"email": "ann.lee@school.test"}),
    ]:
        r = client.post(API + path, json=body, headers=bearer(token), environ_base=remote)
        assert r.status_code == 201
    with app.app_context():
        events = {
            e.action: e
            for e in get_session().scalars(
                select(AuditEvent).where(AuditEvent.address == "203.0.113.7")
            )
        }
    assert set(events) == {"class.created", "user.created", "client_token.issued"}
    assert {e.actor_id for e in events.values()} == {owner.id}
    assert events["user.created"].subject == "user:ann.lee@school.test"
    assert events["user.created"].detail["classes"] == ["7b"]
    assert events["class.created"].subject == "class:8c"


@pytest.mark.parametrize(
    "path",
    ["/notifications/99999999999", "/notifications/0", "/notifications/99999999999/deliveries"],
)
def test_ids_that_cannot_exist_are_404(api, path):
    response = api.get(path)
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# "²" is a digit to str.isdigit() but not to int(); 5,000 digits are past int()'s limit.
@pytest.mark.parametrize("since", ["99999999999", "-1", "abc", "%C2%B2", "9" * 5000])
def test_inbox_since_must_be_an_id(api, since):
    response = api.get(f"/me/notifications?since={since}")
    assert response.status_code == 400
    assert error_of(response)["code"] == "validation_failed"


def sending(fields: str) -> str:
    """The JSON text of a send to everyone with `fields` (raw JSON, escapes kept)."""
    return '{"body": "b", "targets": {"everyone": true}, ' + fields + "}"


# Found by schemathesis (tests/test_openapi.py) or next to what it found: each was a 500.
@pytest.mark.parametrize(
    "path, body, status, code",
    [
        ("/notifications", sending('"title": "\\ud800"'), 400, "invalid_json"),
        ("/notifications", sending('"title": "a\\u0000b"'), 400, "invalid_json"),
        ("/classes", '{"name": ' + "[" * 100_000 + "]" * 100_000 + "}", 400, "invalid_json"),
        ("/notifications", sending('"title": "t", "link": "https://[::1"'), 400, "invalid_link"),
        (
            "/notifications",
            sending('"title": "t", "expires_at": "9999-12-31T23:59:59-23:59"'),
            400,
            "validation_failed",
        ),
        (
            "/notifications",
            '{"title": "t", "body": "b", '
            '"targets": {"classes": [{"name": "7b", "audience": [{}]}]}}',
            400,
            "invalid_audience",
        ),
        (
            "/push/subscriptions",
            '{"endpoint": "https://[::1/x", "keys": {"p256dh": "a", "auth": "b"}}',
            422,
            "invalid_push_endpoint",
        ),
    ],
)
def test_malformed_input_is_refused_not_a_crash(api, class_7b, path, body, status, code):
    response = api.post(path, data=body, content_type="application/json")
    assert response.status_code == status, response.get_data(as_text=True)
    assert error_of(response)["code"] == code


def test_an_address_with_a_nul_is_no_user_on_either_backend(any_database_url, tmp_path):
    """A path like /users/a%00b is a 404, not PostgreSQL's refusal of NUL as a 500."""
    app = make_test_app(any_database_url, tmp_path)
    with app.app_context():
        session = get_session()
        admin = users_service.create(
            session,
            None,
            users_service.UserInput(email="ada@school.test", name="Ada", role="admin"),
        )
        _token, secret = api_tokens.create(session, "nul", admin)
    response = app.test_client().get(f"{API}/users/a%00b@school.test", headers=bearer(secret))
    app.extensions["schoolbell.db"].kw["bind"].dispose()
    assert response.status_code == 404
    assert error_of(response)["code"] == "user_not_found"


def test_my_notifications_lists_the_callers_own_with_their_state(api, owner, make_user):
    make_user("teacher", email="tess@school.test")
    sent = []
    for title in ("First", "Second"):
        response = api.post(
            "/notifications",
            json={"title": title, "body": "x", "targets": {"users": [owner.email]}},
        )
        assert response.status_code == 201
        sent.append(response.get_json()["id"])
    api.post(
        "/notifications",
        json={"title": "Not mine", "body": "x", "targets": {"users": ["tess@school.test"]}},
    )

    newest_first = api.get("/me/notifications").get_json()["notifications"]
    assert [n["id"] for n in newest_first] == sent[::-1]
    assert newest_first[0]["title"] == "Second" and newest_first[0]["state"] == "pending"
    after_first = api.get(f"/me/notifications?since={sent[0]}").get_json()["notifications"]
    assert [n["id"] for n in after_first] == [sent[1]]
