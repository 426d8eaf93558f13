"""Signed links from e-mails (/l/open/<token>, /l/confirm/<token>): they open and confirm
without signing in, record through the e-mail channel, work once, expire, refuse a
tampered signature, and keep their token out of caches, Referers and logs."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import func, select, update

from webapp import errors, tokens
from webapp.db import session_scope, utcnow
from webapp.logs import redact
from webapp.models import (
    AuditEvent,
    Channel,
    Delivery,
    DeliveryState,
    Notification,
    UsedLink,
    User,
)
from webapp.services import links, notifications, receipts
from webapp.services import users as users_service
from webapp.services.audience import AudienceSpec

from .conftest import TEST_SECRETS, make_test_app
from .helpers import csrf_token_from

SECRET = TEST_SECRETS["SECRET_KEY"]
ERROR_CODE = re.compile(r'data-error-code="([a-z_]+)"')


def people_on(app) -> dict[str, User]:
    """The sender, a guardian, and another guardian, on `app`'s database."""
    people = {}
    with app.app_context(), session_scope(app) as session:
        for handle, role, name in (
            ("admin", "admin", "Ada Admin"),
            ("guardian", "guardian", "Grace G"),
            ("other", "guardian", "Olga O"),
        ):
            data = users_service.UserInput(email=f"{handle}@school.test", name=name, role=role)
            people[handle] = users_service.create(session, None, data)
            session.expunge(people[handle])
    return people


@pytest.fixture
def school(app):
    return people_on(app)


def send(app, school, *to: str, **fields) -> int:
    """Send as the admin to the `to` handles (default: the guardian); the new id."""
    draft = notifications.Draft(
        title=fields.pop("title", "Parents' evening"),
        body=fields.pop("body", "Thursday, **18:00**, in the hall."),
        audience=AudienceSpec(users=tuple(school[h].email for h in to or ("guardian",))),
        **fields,
    )
    with session_scope(app) as session:
        prepared = notifications.prepare(session, session.get(User, school["admin"].id), draft)
        return notifications.send(session, prepared).notification.id


def link(purpose: str, user, notification_id: int, *, age_s: int = 0) -> str:
    """The path of a signed link, made `age_s` seconds ago."""
    if not age_s:
        return f"/l/{purpose}/{tokens.sign_link(SECRET, purpose, user.id, notification_id)}"
    now = int(time.time())
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now - age_s)
        return f"/l/{purpose}/{tokens.sign_link(SECRET, purpose, user.id, notification_id)}"


def delivery(app, notification_id: int, user) -> Delivery:
    with session_scope(app) as session:
        return session.scalar(
            select(Delivery).where(
                Delivery.notification_id == notification_id, Delivery.user_id == user.id
            )
        )


def count(app, model, *where) -> int:
    with session_scope(app) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def refused(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert ERROR_CODE.findall(response.get_data(as_text=True)) == [code]
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


def confirm_form(client, path: str) -> str:
    """GET a confirm link's page; the CSRF token of its form."""
    page = client.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'action="{path}"' in html
    return csrf_token_from(html)


# Opening ------------------------------------------------------------------------------------


def test_the_open_link_shows_the_announcement_without_signing_in_and_records_read(
    app, client, school
):
    mine = send(app, school, title="Parents' evening")
    send(app, school, "other", title="Not for Grace")
    response = client.get(
        link("open", school["guardian"], mine), environ_base={"REMOTE_ADDR": "198.51.100.7"}
    )

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Parents&#39; evening" in html
    assert "Thursday, <strong>18:00</strong>, in the hall." in html
    assert "Ada Admin" in html
    assert "Sign in to see all your announcements" in html
    assert "Not for Grace" not in html and "guardian@school.test" not in html
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    d = delivery(app, mine, school["guardian"])
    assert (d.state, d.channel) == (DeliveryState.READ, Channel.EMAIL)
    assert d.delivered_at == d.read_at is not None
    with session_scope(app) as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "link.opened"))
        assert (event.actor_id, event.subject, event.address) == (
            school["guardian"].id,
            f"notification:{mine}",
            "198.51.100.7",
        )


def test_an_open_link_works_once(app, client, school):
    notification_id = send(app, school)
    path = link("open", school["guardian"], notification_id)
    assert client.get(path).status_code == 200
    refused(client.get(path), 410, "link_used")
    response = client.get(path, headers={"Accept": "application/json"})
    assert response.get_json()["error"] == {
        "code": "link_used",
        "message": "This link has already been used. Sign in to see the announcement.",
    }


def test_a_link_checkers_head_request_uses_nothing(app, client, school):
    notification_id = send(app, school)
    path = link("open", school["guardian"], notification_id)
    assert client.head(path).status_code == 200
    assert delivery(app, notification_id, school["guardian"]).state is DeliveryState.PENDING
    assert client.get(path).status_code == 200
    assert delivery(app, notification_id, school["guardian"]).state is DeliveryState.READ


def test_opening_one_to_confirm_points_to_the_confirm_link(app, client, school):
    notification_id = send(app, school, require_ack=True)
    html = client.get(link("open", school["guardian"], notification_id)).get_data(as_text=True)
    assert "use the Confirm link in the e-mail" in html  # one line: {% trans %} trims
    assert "<form" not in html.split('id="link-notification"')[1]  # no Confirm button


# Confirming ---------------------------------------------------------------------------------


def test_the_confirm_page_changes_nothing_and_its_button_confirms(app, client, school):
    notification_id = send(app, school, require_ack=True)
    path = link("confirm", school["guardian"], notification_id)
    token = confirm_form(client, path)
    assert confirm_form(client, path)  # a mail scanner's visit, and another: still unused
    assert delivery(app, notification_id, school["guardian"]).state is DeliveryState.PENDING
    assert count(app, UsedLink) == 0

    response = client.post(path, data={"csrf_token": token})

    assert response.status_code == 200
    assert "Confirmed. Thank you." in response.get_data(as_text=True)
    assert response.headers["Referrer-Policy"] == "no-referrer"
    d = delivery(app, notification_id, school["guardian"])
    assert (d.state, d.channel) == (DeliveryState.ACKNOWLEDGED, Channel.EMAIL)
    assert count(app, AuditEvent, AuditEvent.action == "link.confirmed") == 1
    refused(client.post(path, data={"csrf_token": token}), 410, "link_used")
    refused(client.get(path), 410, "link_used")


def test_confirming_needs_the_pages_csrf_token(app, client, school):
    notification_id = send(app, school, require_ack=True)
    path = link("confirm", school["guardian"], notification_id)
    response = client.post(path, data={})
    assert response.status_code == 400
    assert ERROR_CODE.findall(response.get_data(as_text=True)) == ["csrf_failed"]
    assert delivery(app, notification_id, school["guardian"]).state is DeliveryState.PENDING
    assert count(app, UsedLink) == 0


def test_a_confirm_page_for_one_already_confirmed_says_so(app, client, school):
    notification_id = send(app, school, require_ack=True)
    with session_scope(app) as session:
        receipts.record_one(session, school["guardian"].id, notification_id, "acknowledged")
    html = client.get(link("confirm", school["guardian"], notification_id)).get_data(as_text=True)
    assert "You have already confirmed this announcement." in html
    assert "<form" not in html.split('id="link-notification"')[1]


# Refused links ------------------------------------------------------------------------------


def tampered(path: str) -> list[str]:
    """Ways to break a link: a changed signature, a changed payload, cut short, garbage."""
    prefix, token = path.rsplit("/", 1)
    payload, timestamp, signature = token.split(".")
    other = "A" if signature[0] != "A" else "B"
    forged_payload = URLSafeTimedSerializer("not our secret").dumps([1, 1, "n"]).split(".")[0]
    return [
        f"{prefix}/{payload}.{timestamp}.{other}{signature[1:]}",
        f"{prefix}/{forged_payload}.{timestamp}.{signature}",
        f"{prefix}/{token[:-5]}",
        f"{prefix}/garbage",
        f"{prefix}/{'x' * 600}",
    ]


@pytest.mark.parametrize("purpose", ["open", "confirm"])
def test_a_tampered_link_is_refused_and_records_nothing(app, client, school, purpose):
    notification_id = send(app, school, require_ack=True)
    for path in tampered(link(purpose, school["guardian"], notification_id)):
        refused(client.get(path), 400, "invalid_link_token")
    assert delivery(app, notification_id, school["guardian"]).state is DeliveryState.PENDING
    assert count(app, UsedLink) == count(app, AuditEvent, AuditEvent.action.like("link.%")) == 0


def test_a_link_of_one_kind_is_not_a_link_of_the_other(app, client, school):
    notification_id = send(app, school, require_ack=True)
    open_token = link("open", school["guardian"], notification_id).rsplit("/", 1)[1]
    refused(client.get(f"/l/confirm/{open_token}"), 400, "invalid_link_token")
    refused(client.post(f"/l/confirm/{open_token}", data={}), 400, "csrf_failed")


def test_an_old_link_has_expired(app, client, school):
    notification_id = send(app, school, require_ack=True)
    too_old = app.config["LINK_TTL_S"] + 60
    for purpose in ("open", "confirm"):
        path = link(purpose, school["guardian"], notification_id, age_s=too_old)
        refused(client.get(path), 410, "link_expired")
    fresh_enough = link("open", school["guardian"], notification_id, age_s=too_old - 120)
    assert client.get(fresh_enough).status_code == 200


def test_a_deactivated_recipients_link_is_refused(app, client, school):
    notification_id = send(app, school, require_ack=True)
    with session_scope(app) as session:
        session.execute(update(User).where(User.id == school["guardian"].id).values(active=False))
        session.commit()
    refused(
        client.get(link("open", school["guardian"], notification_id)), 404, "notification_not_found"
    )
    refused(
        client.get(link("confirm", school["guardian"], notification_id)),
        404,
        "notification_not_found",
    )
    assert count(app, UsedLink) == 0


def test_a_link_for_someone_who_is_not_a_recipient_is_refused(app, client, school):
    notification_id = send(app, school)  # to the guardian only
    refused(
        client.get(link("open", school["other"], notification_id)), 404, "notification_not_found"
    )


def test_a_withdrawn_or_expired_announcement_says_so(app, client, school):
    withdrawn, expiring = send(app, school), send(app, school)
    with session_scope(app) as session:
        session.execute(
            update(Notification).where(Notification.id == withdrawn).values(retracted_at=utcnow())
        )
        session.execute(
            update(Notification)
            .where(Notification.id == expiring)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
        session.commit()
    response = client.get(link("open", school["guardian"], withdrawn))
    refused(response, 410, "notification_withdrawn")
    assert "withdrawn" in response.get_data(as_text=True)
    response = client.get(link("open", school["guardian"], expiring))
    refused(response, 410, "link_expired")
    assert "This announcement has expired" in response.get_data(as_text=True)
    assert delivery(app, withdrawn, school["guardian"]).state is DeliveryState.PENDING
    assert count(app, UsedLink) == 0


def test_a_failure_while_recording_leaves_the_link_unused(app, client, school, monkeypatch):
    notification_id = send(app, school)
    path = link("open", school["guardian"], notification_id)

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(receipts, "record_receipts", broken)
    assert client.get(path).status_code == 500
    monkeypatch.undo()
    assert count(app, UsedLink) == count(app, AuditEvent, AuditEvent.action == "link.opened") == 0
    assert client.get(path).status_code == 200
    assert delivery(app, notification_id, school["guardian"]).state is DeliveryState.READ


def test_each_link_works_once_on_both_backends(any_database_url, tmp_path):
    app = make_test_app(any_database_url, tmp_path)
    try:
        school = people_on(app)
        client = app.test_client()
        notification_id = send(app, school, require_ack=True)
        opened = link("open", school["guardian"], notification_id)
        confirmed = link("confirm", school["guardian"], notification_id)
        assert client.get(opened).status_code == 200
        refused(client.get(opened), 410, "link_used")
        token = confirm_form(client, confirmed)
        assert client.post(confirmed, data={"csrf_token": token}).status_code == 200
        refused(client.post(confirmed, data={"csrf_token": token}), 410, "link_used")
        d = delivery(app, notification_id, school["guardian"])
        assert (d.state, d.channel) == (DeliveryState.ACKNOWLEDGED, Channel.EMAIL)
        assert count(app, UsedLink) == 2
    finally:
        app.extensions["schoolbell.db"].kw["bind"].dispose()


def test_use_link_refuses_a_nonce_used_before(app, school):
    notification_id = send(app, school)
    claims = tokens.LinkClaims(school["guardian"].id, notification_id, "the-same-nonce")
    with session_scope(app) as session:
        links.use_link(session, "open", claims)
    with session_scope(app) as session, pytest.raises(errors.DomainError) as caught:
        links.use_link(session, "open", claims)
    assert caught.value.kind == errors.LINK_USED
    assert count(app, UsedLink) == 1


# Tokens --------------------------------------------------------------------------------------


def test_verify_link_returns_the_claims_and_tells_expired_from_invalid():
    token = tokens.sign_link(SECRET, "confirm", 7, 42)
    claims = tokens.verify_link(SECRET, "confirm", token, max_age_s=60)
    assert (claims.user_id, claims.notification_id, len(claims.nonce)) == (7, 42, 22)
    assert tokens.sign_link(SECRET, "confirm", 7, 42) != token  # a new nonce each time
    with pytest.raises(tokens.InvalidLink):
        tokens.verify_link("another secret" * 4, "confirm", token, max_age_s=60)
    with pytest.raises(tokens.InvalidLink):
        tokens.verify_link(SECRET, "open", token, max_age_s=60)
    with pytest.raises(tokens.LinkExpired):
        tokens.verify_link(SECRET, "confirm", token, max_age_s=-1)


@pytest.mark.parametrize("payload", [[1, 2], [1, 2, ""], ["1", 2, "n"], [True, 2, "n"], {"u": 1}])
def test_a_well_signed_token_of_the_wrong_shape_is_invalid(payload):
    token = URLSafeTimedSerializer(SECRET, salt=tokens.LINK_SALT + "open").dumps(payload)
    with pytest.raises(tokens.InvalidLink):
        tokens.verify_link(SECRET, "open", token, max_age_s=60)


# Logs ----------------------------------------------------------------------------------------


def test_the_access_log_does_not_show_a_links_token():
    from gunicorn.config import Config

    from webapp import gunicorn_conf

    token = tokens.sign_link(SECRET, "open", 1, 2)
    logger = gunicorn_conf.AccessLogger(Config())
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/l/open/{token}",
        "PATH_INFO": f"/l/open/{token}",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    response = SimpleNamespace(status="200 OK", sent=10, headers=[])
    atoms = logger.atoms(response, SimpleNamespace(headers=[]), environ, timedelta(0))
    line = gunicorn_conf.access_log_format % logger.atoms_wrapper_class(atoms)
    assert "/l/open/***" in line
    assert token not in line and token not in atoms["r"]
    assert gunicorn_conf.logger_class is gunicorn_conf.AccessLogger


def test_app_logs_mask_a_links_token():
    token = tokens.sign_link(SECRET, "confirm", 1, 2)
    assert redact(f"unhandled error on POST /l/confirm/{token}") == (
        "unhandled error on POST /l/confirm/***"
    )
