"""Web Push over HTTP: the key and subscription endpoints as a signed-in page (session +
CSRF) or an embedded page (client JWT) uses them, device receipts, and the settings page
where people choose their channels and remove devices."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from webapp import tokens
from webapp.db import get_session, session_scope
from webapp.models import AuditEvent, Delivery, PushSubscription, User
from webapp.services import api_tokens, notifications, push, reach
from webapp.services import users as users_service
from webapp.services.audience import AudienceSpec
from webapp.services.notifications import Draft

from .conftest import make_test_app
from .helpers import csrf_token_from
from .push_service import PushService

API = "/api/v1"
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)


@pytest.fixture(scope="module")
def service():
    """One stand-in for the module: these tests subscribe to it, nothing is pushed."""
    with PushService() as service:
        yield service
    assert service.requests == []  # subscribing never calls the push service


@pytest.fixture
def app(database_url, tmp_path, service):
    app = make_test_app(database_url, tmp_path, PUSH_ALLOWED_ORIGINS=service.origin)
    yield app
    app.extensions["schoolbell.db"].kw["bind"].dispose()


@pytest.fixture
def student(make_user, auth):
    """A signed-in student."""
    user = make_user("student", email="sam@school.test", name="Sam Student")
    auth.signin(user.email)
    return user


def csrf_header(client) -> dict:
    return {"X-CSRFToken": csrf_token_from(client.get("/inbox").get_data(as_text=True))}


def client_jwt(app, user) -> str:
    with app.app_context():
        session = get_session()
        return api_tokens.issue_client_token(
            session, app.config, session.get(User, user.id), actor=None
        ).token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def error_of(response) -> tuple[int, str]:
    assert response.is_json, response.get_data(as_text=True)
    return response.status_code, response.get_json()["error"]["code"]


def subscriptions(app, user=None) -> list[PushSubscription]:
    with session_scope(app) as session:
        query = select(PushSubscription).order_by(PushSubscription.id)
        if user is not None:
            query = query.where(PushSubscription.user_id == user.id)
        return list(session.scalars(query))


def audited(app, action: str) -> list[AuditEvent]:
    with session_scope(app) as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


# --- the key --------------------------------------------------------------------------


def test_the_key_is_the_servers_vapid_public_key(app, client, student):
    r = client.get(f"{API}/push/key")
    assert r.status_code == 200
    assert r.get_json() == {"public_key": push.public_key(app)}


def test_the_key_needs_someone_signed_in(client):
    assert error_of(client.get(f"{API}/push/key")) == (401, "not_authenticated")


# --- subscribing from a signed-in page ------------------------------------------------


def test_a_page_subscribes_with_its_session_and_csrf_token(app, client, student, service):
    browser = service.browser("sams-phone")
    headers = {**csrf_header(client), "User-Agent": CHROME_ANDROID}

    first = client.post(f"{API}/push/subscriptions", json=browser.subscription, headers=headers)
    again = client.post(f"{API}/push/subscriptions", json=browser.subscription, headers=headers)

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["device"] == "Chrome on Android"
    assert first.get_json()["id"] == again.get_json()["id"]
    [saved] = subscriptions(app, student)
    assert saved.endpoint == browser.endpoint and saved.user_agent == CHROME_ANDROID


def test_without_the_csrf_token_nothing_is_saved(app, client, student, service):
    body = service.browser("x").subscription
    r = client.post(f"{API}/push/subscriptions", json=body)
    assert error_of(r) == (400, "csrf_failed")
    r = client.delete(f"{API}/push/subscriptions", json={"endpoint": body["endpoint"]})
    assert error_of(r) == (400, "csrf_failed")
    assert subscriptions(app) == []


def test_unsubscribing_forgets_the_device(app, client, student, service):
    browser = service.browser("y")
    headers = csrf_header(client)
    client.post(f"{API}/push/subscriptions", json=browser.subscription, headers=headers)
    r = client.delete(
        f"{API}/push/subscriptions", json={"endpoint": browser.endpoint}, headers=headers
    )
    assert r.status_code == 204
    assert subscriptions(app) == []
    r = client.delete(
        f"{API}/push/subscriptions", json={"endpoint": browser.endpoint}, headers=headers
    )
    assert error_of(r) == (404, "push_subscription_not_found")


def test_someone_elses_endpoint_cannot_be_unsubscribed(app, client, make_user, service, auth):
    owner = make_user("guardian", password=None)
    browser = service.browser("owners-phone")
    with app.app_context():
        session = get_session()
        push.subscribe(
            session,
            session.get(User, owner.id),
            browser.subscription,
            None,
            None,
            config=app.config,
        )
    intruder = make_user("student")
    auth.signin(intruder.email)
    r = client.delete(
        f"{API}/push/subscriptions",
        json={"endpoint": browser.endpoint},
        headers=csrf_header(client),
    )
    assert error_of(r) == (404, "push_subscription_not_found")
    assert len(subscriptions(app, owner)) == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"endpoint": "https://attacker.example/push"}, (422, "push_service_not_allowed")),
        ({"endpoint": "http://127.0.0.1:1/push/x"}, (422, "push_service_not_allowed")),
        ({"endpoint": "javascript:alert(1)"}, (422, "invalid_push_endpoint")),
        ({"keys": {"p256dh": "AAAA", "auth": "AAAA"}}, (422, "invalid_push_key")),
        ({"keys": {"p256dh": "AAAA"}}, (400, "validation_failed")),
        ({"keys": "p256dh"}, (400, "validation_failed")),
        ({"keys": {"p256dh": "a", "auth": "b", "extra": "c"}}, (400, "unknown_field")),
        ({"endpoint": None}, (400, "validation_failed")),
        ({"expirationTime": "tomorrow"}, (400, "validation_failed")),
        ({"surprise": 1}, (400, "unknown_field")),
    ],
)
def test_a_subscription_that_cannot_be_used_is_refused(
    app, client, student, service, change, expected
):
    body = {**service.browser("z").subscription, **change}
    r = client.post(f"{API}/push/subscriptions", json=body, headers=csrf_header(client))
    assert error_of(r) == expected
    assert subscriptions(app) == []


def test_an_expiration_time_is_accepted(app, client, student, service):
    body = {**service.browser("w").subscription, "expirationTime": 1_900_000_000_000}
    r = client.post(f"{API}/push/subscriptions", json=body, headers=csrf_header(client))
    assert r.status_code == 201


# --- subscribing from an embedded page: a client JWT ----------------------------------


def test_an_embedded_page_subscribes_with_a_client_token(app, client, make_user, service):
    guardian = make_user("guardian", password=None)
    token = client_jwt(app, guardian)
    browser = service.browser("embedded")

    key = client.get(f"{API}/push/key", headers=bearer(token))
    saved = client.post(
        f"{API}/push/subscriptions", json=browser.subscription, headers=bearer(token)
    )
    inbox = client.get(f"{API}/me/notifications", headers=bearer(token))
    gone = client.delete(
        f"{API}/push/subscriptions", json={"endpoint": browser.endpoint}, headers=bearer(token)
    )

    assert key.get_json()["public_key"] == push.public_key(app)
    assert (saved.status_code, inbox.status_code, gone.status_code) == (201, 200, 204)
    assert inbox.get_json() == {"notifications": []}
    [event] = audited(app, "push.subscribed")
    assert event.actor_id == guardian.id


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/users/sam@school.test", None),
        ("post", "/notifications", {"title": "x", "body": "y", "targets": {"everyone": True}}),
        ("post", "/tokens", {"email": "sam@school.test"}),
        ("get", "/notifications/1", None),
    ],
)
def test_a_client_token_reaches_nothing_else(app, client, make_user, method, path, body):
    admin = make_user("admin", password=None)  # even an administrator's
    r = getattr(client, method)(API + path, json=body, headers=bearer(client_jwt(app, admin)))
    assert error_of(r) == (403, "client_token_not_allowed")


def _expired(app, user) -> str:
    return tokens.issue_client_token(
        user.id,
        secret=app.config["JWT_SECRET"],
        issuer=app.config["JWT_ISSUER"],
        audience=app.config["JWT_AUDIENCE"],
        ttl_s=-60,
    ).token


def _foreign(app, user) -> str:
    return tokens.issue_client_token(
        user.id, secret="s" * 48, issuer="schoolbell", audience="schoolbell-client", ttl_s=60
    ).token


def _deactivated(app, user) -> str:
    token = client_jwt(app, user)
    with app.app_context():
        session = get_session()
        session.get(User, user.id).active = False
        session.commit()
    return token


@pytest.mark.parametrize(
    ("make", "reason"),
    [(_expired, "token expired"), (_foreign, "invalid token"), (_deactivated, "account disabled")],
)
def test_a_refused_client_token_is_401(app, client, make_user, service, make, reason):
    user = make_user("student", password=None)
    r = client.post(
        f"{API}/push/subscriptions",
        json=service.browser("v").subscription,
        headers=bearer(make(app, user)),
    )
    assert error_of(r) == (401, "invalid_token")
    assert reason in r.get_json()["error"]["message"]
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert subscriptions(app) == []


def test_api_tokens_work_as_before(app, client, make_user, service):
    owner = make_user("admin", email="owner@school.test", password=None)
    with app.app_context():
        session = get_session()
        _token, secret = api_tokens.create(session, "sis", users_service.get(session, owner.id))
    r = client.get(f"{API}/users/owner@school.test", headers=bearer(secret))
    assert r.status_code == 200
    r = client.post(
        f"{API}/push/subscriptions", json=service.browser("u").subscription, headers=bearer(secret)
    )
    assert r.status_code == 201  # acting as its owner
    assert error_of(client.get(f"{API}/users/x", headers=bearer("sbk_" + "x" * 43))) == (
        401,
        "invalid_token",
    )


# --- receipts from a device's service worker ------------------------------------------


@pytest.fixture
def sent(app, make_user):
    """(recipient, notification id): an announcement sent to a student."""
    admin = make_user("admin", password=None)
    recipient = make_user("student", password=None)
    with app.app_context():
        session = get_session()
        draft = Draft(title="Hello", body="World", audience=AudienceSpec(users=(recipient.email,)))
        prepared = notifications.prepare(session, session.get(User, admin.id), draft)
        result = notifications.send(session, prepared, delays=reach.Delays())
        return recipient, result.notification.id


def delivery(app, notification_id: int) -> Delivery:
    with session_scope(app) as session:
        return session.scalar(select(Delivery).where(Delivery.notification_id == notification_id))


def test_a_devices_receipt_records_delivered_by_push(app, client, sent):
    recipient, notification_id = sent
    token = push.receipt_token(app.config["SECRET_KEY"], recipient.id, notification_id)
    r = client.post(f"{API}/push/receipts", json={"token": token, "state": "delivered"})
    assert r.status_code == 204
    reached = delivery(app, notification_id)
    assert (reached.state.value, reached.channel.value) == ("delivered", "push")


@pytest.mark.parametrize(
    ("tamper", "state", "expected"),
    [
        (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "delivered", 400),
        (lambda t: t, "acknowledged", 400),
        (lambda t: "garbage", "read", 400),
    ],
)
def test_a_tampered_token_or_a_wrong_state_is_refused(app, client, sent, tamper, state, expected):
    recipient, notification_id = sent
    token = tamper(push.receipt_token(app.config["SECRET_KEY"], recipient.id, notification_id))
    r = client.post(f"{API}/push/receipts", json={"token": token, "state": state})
    status, code = error_of(r)
    assert status == expected and code in {"invalid_receipt_token", "invalid_state"}
    assert delivery(app, notification_id).state.value == "pending"


# --- the settings page ----------------------------------------------------------------


def test_settings_need_a_signed_in_user(client):
    r = client.get("/settings")
    assert r.status_code == 302 and "/signin" in r.headers["Location"]


def test_every_page_links_to_the_settings(client, student):
    assert 'href="/settings"' in client.get("/inbox").get_data(as_text=True)


def test_the_settings_page_shows_the_choices_and_the_emergency_rule(client, student):
    html = client.get("/settings").get_data(as_text=True)
    assert "Push notifications on my devices" in html
    assert "E-mail when I have not seen an announcement" in html
    assert re.search(r'<input checked id="push" name="push" type="checkbox"', html)
    assert "Emergencies always reach every channel" in html
    assert "No device gets push notifications yet." in html
    assert "<script>" not in html and "style=" not in html  # the strict CSP holds


def test_channel_choices_are_saved_and_audited(app, client, student):
    token = csrf_token_from(client.get("/settings").get_data(as_text=True))
    r = client.post("/settings", data={"csrf_token": token, "email": "y"})  # push unticked
    assert r.status_code == 302
    with session_scope(app) as session:
        saved = session.get(User, student.id)
        assert (saved.push_enabled, saved.email_enabled) == (False, True)
    [event] = audited(app, "user.channels_changed")
    assert event.detail == {"push": False, "email": True}
    page = client.get("/settings").get_data(as_text=True)
    assert "Your choices are saved." in page
    assert re.search(r'<input id="push" name="push" type="checkbox"', page)


def test_channel_choices_need_the_csrf_token(app, client, student):
    r = client.post("/settings", data={"email": "y"})
    assert r.status_code == 400
    with session_scope(app) as session:
        assert session.get(User, student.id).push_enabled is True
    assert audited(app, "user.channels_changed") == []


def _subscribe(app, user, browser, user_agent=CHROME_ANDROID) -> int:
    with app.app_context():
        session = get_session()
        subscription, _ = push.subscribe(
            session,
            session.get(User, user.id),
            browser.subscription,
            user_agent,
            None,
            config=app.config,
        )
        return subscription.id


def test_a_device_is_listed_and_removed(app, client, student, service):
    device_id = _subscribe(app, student, service.browser("sams-tablet"))
    page = client.get("/settings").get_data(as_text=True)
    assert "Chrome on Android" in page and f'id="device-{device_id}"' in page
    assert "None yet" in page  # no push has reached it

    token = csrf_token_from(page)
    r = client.post(
        f"/settings/devices/{device_id}/remove", data={"csrf_token": token}, follow_redirects=True
    )

    assert r.status_code == 200
    assert "Removed Chrome on Android" in r.get_data(as_text=True)
    assert subscriptions(app) == []
    [event] = audited(app, "push.removed")
    assert event.actor_id == student.id and event.detail["device"] == "Chrome on Android"


def test_removing_needs_the_csrf_token_and_ones_own_device(
    app, client, student, service, make_user
):
    device_id = _subscribe(app, student, service.browser("kept"))
    other = make_user("guardian", password=None)
    others_id = _subscribe(app, other, service.browser("others"))
    assert client.post(f"/settings/devices/{device_id}/remove").status_code == 400
    token = csrf_token_from(client.get("/settings").get_data(as_text=True))
    r = client.post(f"/settings/devices/{others_id}/remove", data={"csrf_token": token})
    assert r.status_code == 404
    assert "None of your devices has id" in r.get_data(as_text=True)
    with session_scope(app) as session:
        assert session.scalar(select(func.count()).select_from(PushSubscription)) == 2
