"""A person's data: the export holds what it should and no secret; erasure removes the
name and e-mail everywhere (the audit log included) and keeps the counts; both from the
person's page, the API and the command line, admins only, audited. And the privacy page
states the configured periods. Service rules on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from webapp.db import session_scope
from webapp.errors import Conflict, Forbidden, ValidationFailed
from webapp.models import (
    Answer,
    ApiToken,
    AuditEvent,
    DeliveryState,
    Guardianship,
    Membership,
    Notification,
    Priority,
    PushSubscription,
    User,
)
from webapp.services import audit, privacy, roll_call, status, users

from .conftest import make_test_app
from .helpers import csrf_token_from, post_form
from .school import build_school
from .school_db import T1, own_school, to_class

DEVICE_PATH = "fcm/send/device-secret-path-0123456789"
P256DH = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
AUTH = "tBHItJI5svbpez7KI4CCXg"


@pytest.fixture
def any_db(any_database_url, tmp_path):
    yield from own_school(any_database_url, tmp_path)


def add_device(session, user_id: int) -> None:
    session.add(
        PushSubscription(
            user_id=user_id,
            endpoint=f"https://fcm.googleapis.com/{DEVICE_PATH}",
            p256dh=P256DH,
            auth=AUTH,
            user_agent="Mozilla/5.0 (Linux; Android 14) Chrome/126.0 Mobile Safari/537.36",
        )
    )
    session.commit()


def emergency(db, title: str = "Lockdown") -> int:
    return db.send(title, priority=Priority.EMERGENCY.value, audience=to_class("7b", "students"))


def test_the_export_holds_the_persons_data_and_no_secret(any_db):
    db, session = any_db, any_db.session
    notice = db.send("Trip on Friday", require_ack=True)
    db.receipts(("s7b_1", notice, DeliveryState.ACKNOWLEDGED, T1))
    alarm = emergency(db)
    assert roll_call.record_answer(session, db.id("s7b_1"), alarm, Answer.HELP, "Room 12")
    add_device(session, db.id("s7b_1"))

    data = privacy.export(session, db.user("admin"), db.id("s7b_1"))

    assert data["profile"]["email"] == "s7b_1@school.test"
    assert data["profile"]["name"] == "S7B_1" and data["profile"]["role"] == "student"
    assert data["classes"] == [{"name": "7b", "role": "student"}]
    assert [g["email"] for g in data["guardians"]] == ["g7b_1@school.test"]
    received = {r["notification_id"]: r for r in data["received"]}
    assert set(received) == {notice, alarm}
    receipt = received[notice]["receipt"]
    assert (receipt["state"], receipt["channel"]) == ("acknowledged", "tab")
    assert receipt["read_at"] == receipt["acknowledged_at"] == T1.isoformat()
    assert received[notice]["author"] == "ADMIN"
    assert received[alarm]["receipt"]["answer"] == "help"
    assert received[alarm]["receipt"]["answer_text"] == "Room 12"
    assert data["devices"] == [
        {
            "device": "Chrome on Android",
            "push_service": "fcm.googleapis.com",
            "created_at": data["devices"][0]["created_at"],
            "last_success_at": None,
        }
    ]
    assert data["sent"] == [] and data["api_tokens"] == []
    text = json.dumps(data)
    for secret in (DEVICE_PATH, P256DH, AUTH):
        assert secret not in text
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "user.exported"))
    assert event.actor_id == db.id("admin") and event.detail == {"user_id": db.id("s7b_1")}


def test_a_staff_members_export_has_what_they_sent_and_their_tokens_by_name_only(any_db):
    db, session = any_db, any_db.session
    db.send("Staff notice")
    token = session.scalar(select(ApiToken).where(ApiToken.user_id == db.id("admin")))
    other_admin = users.create(
        session, None, users.UserInput("second@school.test", "Second Admin", "admin")
    )

    data = privacy.export(session, other_admin, db.id("admin"))

    assert [n["title"] for n in data["sent"]] == ["Staff notice"]
    assert [t["name"] for t in data["api_tokens"]] == ["tests"]
    text = json.dumps(data)
    assert token.token_hash not in text and token.prefix not in text
    assert "password" not in text


def audit_text(session) -> str:
    """Every audit entry's subject and detail, as one text."""
    session.expire_all()
    return json.dumps(
        [(e.subject, e.detail) for e in session.scalars(select(AuditEvent))], ensure_ascii=False
    )


def test_erasure_removes_name_and_email_everywhere_and_keeps_the_counts(any_db):
    db, session = any_db, any_db.session
    person = db.id("s7b_1")
    notice = db.send("Trip on Friday", require_ack=True)
    db.receipts(("s7b_1", notice, DeliveryState.READ, T1))
    alarm = emergency(db)
    roll_call.record_answer(session, person, alarm, Answer.HELP, "Room 12, with Ms Lee")
    add_device(session, person)
    # What the audit log says about them, as the roster and sign-in write it.
    audit.record(session, "signin.failed", subject="user:s7b_1@school.test", reason="bad_password")
    audit.record(session, "class.member_added", subject="class:7b", user="s7b_1@school.test")
    audit.record(session, "test.named", subject="note", who="S7B_1", others=["S7B_10"])
    session.commit()
    before = (status.counts(session, notice), status.counts(session, alarm))
    unconfirmed_before = status.unconfirmed_csv(session, session.get(Notification, notice))
    assert "s7b_1@school.test" in unconfirmed_before and "s7b_1@school.test" in audit_text(session)

    erased = privacy.erase(session, db.user("admin"), person)

    session.expire_all()
    user = session.get(User, person)
    assert (user.email, user.name) == (f"erased-{person}@erased.invalid", "Erased person")
    assert erased.email == user.email and user.erased_at is not None
    assert user.password_hash is None and not user.active
    text = audit_text(session)
    assert "s7b_1@school.test" not in text and '"S7B_1"' not in text
    assert "S7B_10" in text  # another person's name that merely starts alike stays
    for model, where in (
        (Membership, Membership.user_id == person),
        (Guardianship, Guardianship.student_id == person),
        (PushSubscription, PushSubscription.user_id == person),
    ):
        assert session.scalar(select(func.count()).select_from(model).where(where)) == 0
    assert (status.counts(session, notice), status.counts(session, alarm)) == before
    csv_text = status.unconfirmed_csv(session, session.get(Notification, notice))
    assert "s7b_1@school.test" not in csv_text and "Erased person" in csv_text
    page = status.recipients_page(session, session.get(Notification, notice))
    assert "Erased person" in [u.name for _, u, _ in page.rows]
    call = roll_call.roll_call(session, session.get(Notification, alarm))
    (helper,) = call.need_help
    assert (helper.name, helper.answer, helper.text) == ("Erased person", Answer.HELP, None)
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "user.erased"))
    assert event.actor_id == db.id("admin") and event.detail == {"user_id": person}
    assert event.subject == f"user:erased-{person}@erased.invalid"
    # The old address is free again, for a new account.
    users.create(session, None, users.UserInput("s7b_1@school.test", "New Person", "student"))


def test_erasure_is_for_admins_once_and_never_of_oneself(any_db):
    db, session = any_db, any_db.session
    with pytest.raises(Forbidden):
        privacy.erase(session, db.user("t7b"), db.id("s7b_2"))
    with pytest.raises(ValidationFailed):
        privacy.erase(session, db.user("admin"), db.id("admin"))
    privacy.erase(session, db.user("admin"), db.id("s7b_2"))
    with pytest.raises(Conflict):
        privacy.erase(session, db.user("admin"), db.id("s7b_2"))
    with pytest.raises(Forbidden):
        privacy.export(session, db.user("t7b"), db.id("s7b_3"))


# The person's page, the API and the command line ---------------------------------------


@pytest.fixture
def school(app):
    return build_school(app)


def signed_in_client(app, email: str):
    client = app.test_client()
    post_form(client, "/signin", {"email": email, "password": "correct horse battery"})
    return client


def test_the_persons_page_offers_export_and_erasure_with_confirmation(app, school):
    admin = signed_in_client(app, school.emails["admin"])
    person = school.ids["s7b_3"]
    page = admin.get(f"/roster/users/{person}/edit").get_data(as_text=True)
    assert f'href="/roster/users/{person}/export"' in page and "Erase S7B_3 for good" in page

    download = admin.get(f"/roster/users/{person}/export")
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert download.get_json()["profile"]["email"] == "s7b_3@school.test"

    url = f"/roster/users/{person}/erase"
    page_url = f"/roster/users/{person}/edit"
    wrong = post_form(admin, url, {"confirm_email": "someone@school.test"}, page=page_url)
    assert wrong.status_code == 400 and "Type the person" in wrong.get_data(as_text=True)
    no_csrf = admin.post(url, data={"confirm_email": "s7b_3@school.test"})
    assert no_csrf.status_code == 400
    with session_scope(app) as session:
        assert session.get(User, person).erased_at is None

    done = post_form(admin, url, {"confirm_email": "S7B_3@school.test "}, page=page_url)
    assert done.status_code == 302
    page = admin.get(page_url).get_data(as_text=True)
    assert "data-erased" in page and "S7B_3" not in page and "s7b_3@school.test" not in page

    teacher = signed_in_client(app, school.emails["t7b"])
    assert teacher.get(f"/roster/users/{school.ids['s7b_1']}/export").status_code == 403


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_the_api_exports_and_erases_for_admins_only(app, school):
    client = app.test_client()
    email = school.emails["s7b_2"]
    exported = client.get(f"/api/v1/users/{email}/export", headers=bearer(school.api_token))
    assert exported.status_code == 200 and exported.get_json()["profile"]["email"] == email

    unknown = client.get(
        "/api/v1/users/nobody@school.test/export", headers=bearer(school.api_token)
    )
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "user_not_found"

    teacher = signed_in_client(app, school.emails["t7b"])
    csrf = csrf_token_from(teacher.get("/dashboard").get_data(as_text=True))
    for response in (
        teacher.get(f"/api/v1/users/{email}/export"),
        teacher.post(f"/api/v1/users/{email}/erase", headers={"X-CSRFToken": csrf}),
        teacher.get("/api/v1/users/nobody@school.test/export"),  # 403 first: no probing
    ):
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "forbidden"

    erased = client.post(f"/api/v1/users/{email}/erase", headers=bearer(school.api_token))
    assert erased.status_code == 200
    body = erased.get_json()
    assert body["id"] == school.ids["s7b_2"]
    assert body["email"] == f"erased-{school.ids['s7b_2']}@erased.invalid"
    again = client.post(f"/api/v1/users/{body['email']}/erase", headers=bearer(school.api_token))
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_erased"
    gone = client.post(f"/api/v1/users/{email}/erase", headers=bearer(school.api_token))
    assert gone.status_code == 404


def test_the_command_line_exports_and_erases_after_confirmation(app, school):
    runner = app.test_cli_runner()
    email = school.emails["g7b_1"]
    exported = runner.invoke(args=["export-person", email])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output)["profile"]["email"] == email

    declined = runner.invoke(args=["erase-person", email], input="n\n")
    assert declined.exit_code == 1
    with session_scope(app) as session:
        assert users.by_email(session, email) is not None

    done = runner.invoke(args=["erase-person", email, "--yes"])
    assert done.exit_code == 0, done.output
    assert f"erased-{school.ids['g7b_1']}@erased.invalid" in done.output
    with session_scope(app) as session:
        assert users.by_email(session, email) is None
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "user.erased"))
        assert event.actor_id is None and event.detail == {"user_id": school.ids["g7b_1"]}

    missing = runner.invoke(args=["export-person", "nobody@school.test"])
    assert missing.exit_code == 1 and "No user with email" in missing.output


# The privacy page ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, announcements, audit_log",
    [
        ({"RETENTION_DAYS": "30", "AUDIT_RETENTION_DAYS": "90"}, "30 days", "90 days"),
        ({"RETENTION_DAYS": "", "AUDIT_RETENTION_DAYS": "0"}, "forever", "forever"),
    ],
)
def test_the_privacy_page_states_the_configured_periods(
    database_url, tmp_path, settings, announcements, audit_log
):
    app = make_test_app(database_url, tmp_path, **settings)
    client = app.test_client()
    page = client.get("/privacy")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f"{announcements} after sending" in html
    assert f"{audit_log}, then deleted" in html
    assert "7 days" in html  # signed links (SCHOOLBELL_LINK_TTL_S)
    signin = client.get("/signin").get_data(as_text=True)
    assert signin.count('href="/privacy"') == 2  # in the text and in the footer
    app.extensions["schoolbell.db"].kw["bind"].dispose()


def test_the_privacy_page_and_an_erased_person_read_german_for_a_german_browser(app, school):
    german = {"Accept-Language": "de"}
    html = app.test_client().get("/privacy", headers=german).get_data(as_text=True)
    assert '<html lang="de">' in html and "<h1>Datenschutz</h1>" in html
    assert "Wer Ihre Daten speichert" in html
    assert "Nach dem Versand 365 Tage lang, danach gelöscht" in html
    assert "Links funktionieren 7 Tage lang" in html
    assert "Who keeps your data" not in html and "after sending" not in html

    person = school.ids["s7b_3"]
    with session_scope(app) as session:
        privacy.erase(session, None, person)
    admin = signed_in_client(app, school.emails["admin"])
    page_url = f"/roster/users/{person}/edit"
    page = admin.get(page_url, headers=german).get_data(as_text=True)
    assert "<h1>Gelöschte Person" in page and "Datenschutz" in page and "Daten exportieren" in page
    assert "Erased person" not in page
    # Stored in English, and English pages say so.
    assert "<h1>Erased person" in admin.get(page_url, headers={"Accept-Language": "en"}).get_data(
        as_text=True
    )
