"""Sign-in, sign-out, sessions, throttling and the `next` redirect."""

import pytest
from sqlalchemy import select

from webapp.models import AuditEvent

from .conftest import PASSWORD
from .helpers import post_form


@pytest.mark.parametrize(
    ("role", "home"),
    [
        ("admin", "/dashboard"),
        ("teacher", "/dashboard"),
        ("student", "/inbox"),
        ("guardian", "/inbox"),
    ],
)
def test_each_role_lands_on_its_home(client, make_user, auth, role, home):
    user = make_user(role)
    response = auth.signin(user.email)
    assert response.status_code == 302
    assert response.headers["Location"] == home
    assert client.get(home).status_code == 200


def test_email_is_case_insensitive(make_user, auth):
    make_user("teacher", email="ms.smith@school.test")
    assert auth.signin("  MS.Smith@School.TEST ").status_code == 302


@pytest.mark.parametrize(
    ("email", "password"),
    [("teacher1@school.test", "wrong password"), ("nobody@school.test", PASSWORD)],
)
def test_wrong_credentials_give_one_message(client, make_user, auth, email, password):
    make_user("teacher")
    response = auth.signin(email, password)
    assert response.status_code == 401
    assert "Wrong email or password." in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302  # still signed out


def test_disabled_account_cannot_sign_in(make_user, auth):
    user = make_user("student", active=False)
    response = auth.signin(user.email)
    assert response.status_code == 401
    assert "This account is disabled" in response.get_data(as_text=True)


def test_students_cannot_open_the_dashboard(client, make_user, auth):
    auth.signin(make_user("student").email)
    response = client.get("/dashboard")
    assert response.status_code == 403
    assert "for school staff" in response.get_data(as_text=True)


def test_anonymous_is_sent_to_signin_with_next(client):
    response = client.get("/dashboard")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/signin?next=")


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/inbox", "/inbox"),
        ("/dashboard?tab=1", "/dashboard?tab=1"),
        ("https://evil.example/", "/dashboard"),
        ("//evil.example/", "/dashboard"),
        ("/\\evil.example/", "/dashboard"),
        ("javascript:alert(1)", "/dashboard"),
        ("http:/evil.example", "/dashboard"),
    ],
)
def test_next_only_redirects_to_local_paths(make_user, auth, next_url, expected):
    user = make_user("admin")
    response = auth.signin(user.email, next=next_url)
    assert response.headers["Location"] == expected


def test_signin_without_csrf_token_is_refused(client, make_user):
    user = make_user("admin")
    response = client.post("/signin", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302


def test_session_is_renewed_at_signin(client, make_user, auth):
    user = make_user("admin")
    client.get("/signin")
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
    auth.signin(user.email)
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["_user_id"].startswith(f"{user.id}:")


def test_signout_ends_the_session(client, make_user, auth):
    auth.signin(make_user("teacher").email)
    response = auth.signout()
    assert response.status_code == 302
    assert client.get("/dashboard").status_code == 302


def test_signout_needs_post_with_csrf(client, make_user, auth):
    auth.signin(make_user("teacher").email)
    assert client.get("/signout").status_code == 405
    assert client.post("/signout").status_code == 400
    assert client.get("/dashboard").status_code == 200


def test_deactivation_ends_live_sessions(app, client, make_user, auth):
    user = make_user("teacher")
    auth.signin(user.email)
    assert client.get("/dashboard").status_code == 200
    with app.app_context():
        from webapp.db import get_session
        from webapp.models import User

        session = get_session()
        stored = session.get(User, user.id)
        stored.active = False
        stored.session_epoch += 1
        session.commit()
    assert client.get("/dashboard").status_code == 302


def test_failed_signins_are_throttled_per_account(client, make_user, auth):
    user = make_user("teacher")
    for _ in range(5):
        assert auth.signin(user.email, "wrong password").status_code == 401
    response = auth.signin(user.email)  # even the right password waits now
    assert response.status_code == 429
    assert "Too many attempts" in response.get_data(as_text=True)
    assert 1 <= int(response.headers["Retry-After"]) <= 5 * 60 + 1  # the window, rounded up
    other = make_user("teacher")
    assert auth.signin(other.email).status_code == 302  # other accounts unaffected


def test_failed_signins_are_throttled_per_address(app, client, make_user, auth):
    app.config["SIGNIN_LIMIT_PER_ADDRESS"] = "3 per 5 minutes"
    for n in range(3):
        assert auth.signin(f"guess{n}@school.test", "x").status_code == 401
    assert auth.signin(make_user("teacher").email).status_code == 429


def test_successful_signins_do_not_count(client, make_user, auth):
    user = make_user("teacher")
    for _ in range(8):
        assert auth.signin(user.email).status_code == 302
        auth.signout()


def test_signins_are_audited(db, make_user, auth):
    user = make_user("teacher")
    auth.signin(user.email, "wrong password")
    auth.signin(user.email)
    events = db.scalars(
        select(AuditEvent).where(AuditEvent.action.like("signin.%")).order_by(AuditEvent.id)
    ).all()
    assert [(e.action, e.subject, e.address) for e in events] == [
        ("signin.failed", f"user:{user.email}", "127.0.0.1"),
        ("signin.succeeded", f"user:{user.email}", "127.0.0.1"),
    ]
    assert events[0].detail == {"reason": "bad_password"}


def test_cookies_are_httponly_and_lax(client, make_user, auth):
    response = auth.signin(make_user("admin").email)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_cookies_are_secure_behind_https(database_url, tmp_path, make_user):
    from .conftest import make_test_app

    app = make_test_app(database_url, tmp_path, HTTPS=True)
    make_user("admin", email="boss@school.test")
    client = app.test_client()
    response = post_form(client, "/signin", {"email": "boss@school.test", "password": PASSWORD})
    assert "Secure" in response.headers["Set-Cookie"]
    assert "Strict-Transport-Security" in response.headers


def test_pages_send_a_strict_csp(client):
    csp = client.get("/signin").headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
