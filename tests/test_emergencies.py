"""Emergencies as services: the templates (defaults, editing, who may, the audit), the
all clear (its rules, what it cancels and queues), the roll call's read model, and a
drill's wording in the compose form, the push and the e-mail. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select

from webapp.db import utcnow
from webapp.errors import DomainError
from webapp.models import (
    Answer,
    AuditEvent,
    Delivery,
    EmergencyTemplate,
    Job,
    JobState,
    Notification,
    Priority,
    PushSubscription,
)
from webapp.services import emergencies, emergency_templates, mail, push, reach, roll_call
from webapp.services.audience import AudienceSpec

from .school_db import session_on, to_class


@pytest.fixture
def db(shared_school):
    """The shared school (both backends), with a fresh session; templates as shipped."""
    for school_db in session_on(*shared_school):
        school_db.session.execute(delete(EmergencyTemplate))
        school_db.session.commit()
        yield school_db


def code_of(call) -> str:
    """The stable error code `call()` raises."""
    with pytest.raises(DomainError) as raised:
        call()
    return raised.value.code


def emergency(db, title: str = "Lockdown", **fields) -> int:
    return db.send(title, priority="emergency", **fields)


# Templates ------------------------------------------------------------------------------


def test_the_default_templates_appear_on_first_use_once(db):
    shown = emergency_templates.for_compose(db.session)
    emergency_templates.for_compose(db.session)

    assert [t.key for t in shown] == ["lockdown", "evacuation", "shelter"]
    assert [t.name for t in shown] == ["Lockdown", "Evacuation", "Shelter in place"]
    assert all("I'm safe" in t.body for t in shown)
    keys = db.session.scalars(select(EmergencyTemplate.key).order_by(EmergencyTemplate.key))
    assert list(keys) == ["all_clear", "evacuation", "lockdown", "shelter"]


def test_an_admin_edits_a_template_and_it_is_kept_and_audited(db):
    admin = db.user("admin")
    emergency_templates.update(
        db.session,
        admin,
        "lockdown",
        name="  Lockdown   (room) ",
        title="Lockdown now",
        body="Lock the door.",
        address="198.51.100.7",
    )
    db.session.execute(delete(EmergencyTemplate).where(EmergencyTemplate.key == "shelter"))
    db.session.commit()

    shown = {t.key: t for t in emergency_templates.for_compose(db.session)}

    assert (shown["lockdown"].name, shown["lockdown"].title) == ("Lockdown (room)", "Lockdown now")
    assert shown["lockdown"].body == "Lock the door."
    assert shown["lockdown"].updated_by_id == admin.id
    assert "shelter" in shown  # a missing default comes back; the edited one stays
    event = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "emergency_template.updated")
    )
    assert (event.actor_id, event.subject, event.address) == (
        admin.id,
        "emergency_template:lockdown",
        "198.51.100.7",
    )


@pytest.mark.parametrize(
    ("by", "key", "fields", "code"),
    [
        ("t7b", "lockdown", {}, "forbidden"),
        ("admin", "nuclear", {}, "template_not_found"),
        ("admin", "lockdown", {"title": "  "}, "title_required"),
        ("admin", "lockdown", {"body": ""}, "body_required"),
        ("admin", "lockdown", {"name": "x" * 101}, "invalid_template_name"),
    ],
)
def test_only_admins_change_templates_and_only_to_valid_ones(db, by, key, fields, code):
    values = {"name": "Lockdown", "title": "Lockdown", "body": "Stay in.", **fields}
    audited = select(func.count()).where(AuditEvent.action == "emergency_template.updated")
    before = db.session.scalar(audited)

    assert code_of(lambda: emergency_templates.update(db.session, db.user(by), key, **values)) == (
        code
    )
    db.session.rollback()
    assert code_of(lambda: emergency_templates.editable(db.session, db.user("t7b"))) == "forbidden"
    assert db.session.scalar(audited) == before
    assert emergency_templates.for_compose(db.session)[0].title != "Lockdown"  # unchanged


# The all clear -----------------------------------------------------------------------------


def test_the_all_clear_ends_an_emergency_with_the_templates_words(db):
    emergency_templates.update(
        db.session,
        db.user("admin"),
        "all_clear",
        name="All clear",
        title="All clear",
        body="It is **over**. Go back to <script>x()</script>class.",
    )
    nid = emergency(db, drill=True)

    ended = emergencies.all_clear(db.session, db.user("admin"), nid, "  ", address="192.0.2.1")

    assert ended.all_clear_at is not None
    assert ended.all_clear_message == "It is over. Go back to class."
    event = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "notification.all_clear")
    )
    assert event.subject == f"notification:{nid}" and event.detail["drill"] is True


def test_the_all_clear_keeps_its_senders_lines(db):
    nid = emergency(db)
    message = "  Over.\n\n  Meet   in the hall.  "

    ended = emergencies.all_clear(db.session, db.user("admin"), nid, message)

    assert ended.all_clear_message == "Over.\n\nMeet in the hall."
    assert (
        code_of(
            lambda: emergencies.all_clear(db.session, db.user("admin"), emergency(db), "x" * 1001)
        )
        == "all_clear_too_long"
    )


def test_the_all_clear_cancels_what_is_queued_and_replaces_what_devices_show(db):
    nid = emergency(db)
    reached, not_reached = db.delivery(nid, "s7b_1"), db.delivery(nid, "s7b_2")
    for n, delivery in enumerate((reached, not_reached)):
        db.session.add(
            PushSubscription(
                user_id=delivery.user_id,
                endpoint=f"https://push.example/{nid}/{n}",
                p256dh="k",
                auth="a",
            )
        )
    reached.pushed_at = utcnow()
    db.session.commit()
    queued_before = db.session.scalar(
        select(func.count()).where(Job.notification_id == nid, Job.state == JobState.QUEUED)
    )

    emergencies.all_clear(db.session, db.user("admin"), nid)

    jobs_now = db.session.execute(
        select(Job.kind, Job.state, Job.delivery_id).where(Job.notification_id == nid)
    ).all()
    assert queued_before > 0
    assert {(kind, state) for kind, state, _ in jobs_now if kind != reach.PUSH_ALL_CLEAR} == {
        (kind, JobState.CANCELLED) for kind, _, _ in jobs_now if kind != reach.PUSH_ALL_CLEAR
    }
    assert [(s, d) for k, s, d in jobs_now if k == reach.PUSH_ALL_CLEAR] == [
        (JobState.QUEUED, reached.id)
    ]


@pytest.mark.parametrize(
    ("situation", "by", "code"),
    [
        ("normal", "admin", "not_an_emergency"),
        ("withdrawn", "admin", "already_withdrawn"),
        ("over", "admin", "emergency_over"),
        ("expired", "admin", "emergency_over"),
        ("scheduled", "admin", "emergency_not_sent"),
        ("sent", "t7b", "not_your_notification"),  # sees it (their class), did not send it
        ("sent", "t7a", "notification_not_found"),
    ],
)
def test_only_a_going_emergency_gets_the_all_clear_from_its_author_or_an_admin(
    db, situation, by, code
):
    nid = db.send("Fire drill", priority="normal" if situation == "normal" else "emergency")
    if situation == "withdrawn":
        db.set_notification(nid, retracted_at=utcnow())
    elif situation == "over":
        emergencies.all_clear(db.session, db.user("admin"), nid)
    elif situation == "expired":
        db.set_notification(nid, expires_at=utcnow() - timedelta(minutes=1))
    elif situation == "scheduled":
        db.set_notification(nid, sent_at=None)

    assert code_of(lambda: emergencies.all_clear(db.session, db.user(by), nid)) == code


def test_a_teacher_ends_their_own_emergency(db):
    nid = emergency(db, by="t7b", audience=to_class("7b"))

    assert emergencies.all_clear(db.session, db.user("t7b"), nid, "Over").all_clear_at


# The roll call's read model ----------------------------------------------------------------


def answer(db, nid: int, handle: str, status: Answer, text: str | None = None, minutes: int = 0):
    at = utcnow() + timedelta(minutes=minutes)
    assert roll_call.record_answer(db.session, db.id(handle), nid, status, text, at)


def test_the_roll_call_lists_those_who_need_help_first(db):
    nid = emergency(db, audience=to_class("7b", "students", "guardians", "teachers"))
    answer(db, nid, "s7b_1", Answer.SAFE)
    answer(db, nid, "s7b_2", Answer.HELP, "Room 12, door stuck", minutes=1)
    answer(db, nid, "g7b_3", Answer.HELP, None, minutes=2)
    answer(db, nid, "t7b", Answer.HELP, "first", minutes=-1)
    answer(db, nid, "t7b", Answer.SAFE, "all fine now")  # the latest answer counts

    found = roll_call.roll_call(db.session, db.session.get(Notification, nid))

    assert found.counts == roll_call.Counts(safe=2, help=2, no_answer=3)
    assert [(p.name, p.text) for p in found.need_help] == [
        ("G7B_3", None),
        ("S7B_2", "Room 12, door stuck"),
    ]
    (group,) = found.groups
    assert group.name == "7b"
    assert [(p.name, p.answer) for p in group.people] == [
        ("G7B_3", Answer.HELP),
        ("S7B_2", Answer.HELP),
        ("G7B_1", None),
        ("G7B_2", None),
        ("S7B_3", None),
        ("S7B_1", Answer.SAFE),
        ("T7B", Answer.SAFE),
    ]
    assert roll_call.counts(db.session, nid) == found.counts


def test_classes_with_someone_in_need_come_first(db):
    both = AudienceSpec(classes=to_class("7a").classes + to_class("7b").classes)
    nid = db.send("Evacuation", priority="emergency", audience=both)
    answer(db, nid, "s7b_3", Answer.HELP, "<b>leg</b>")

    found = roll_call.roll_call(db.session, db.session.get(Notification, nid))

    assert [g.name for g in found.groups] == ["7b", "7a"]
    assert found.groups[0].counts == roll_call.Counts(safe=0, help=1, no_answer=2)


def test_only_emergencies_have_a_roll_call_and_take_answers(db):
    nid = db.send("Trip")
    over = emergency(db)
    emergencies.all_clear(db.session, db.user("admin"), over)

    assert roll_call.roll_call(db.session, db.session.get(Notification, nid)) is None
    assert not roll_call.record_answer(db.session, db.id("s7b_1"), nid, Answer.SAFE, None)
    assert not roll_call.record_answer(db.session, db.id("s7b_1"), over, Answer.SAFE, None)
    assert not roll_call.record_answer(db.session, db.id("s7a_1"), emergency(db), Answer.HELP, "")
    assert (
        db.session.scalar(
            select(func.count()).where(
                Delivery.answer.is_not(None), Delivery.notification_id == nid
            )
        )
        == 0
    )


# A drill says so ---------------------------------------------------------------------------


def drill_notification(**fields) -> Notification:
    values = {
        "id": 41,
        "title": "Lockdown",
        "body": "Stay **in**.",
        "body_html": "<p>Stay <strong>in</strong>.</p>",
        "priority": Priority.EMERGENCY,
        "require_ack": False,
        "drill": True,
        "created_at": utcnow(),
        "all_clear_message": "Over.",
        **fields,
    }
    return Notification(**values)


@pytest.mark.parametrize("drill", [True, False])
def test_a_drills_push_says_drill_first(drill):
    notification = drill_notification(drill=drill)
    prefix = "DRILL: " if drill else ""

    assert push.push_message(notification, "r")["title"] == prefix + "Lockdown"
    assert push.push_message(notification, "r")["drill"] is drill
    message, body = push.change_message(notification, reach.PUSH_ALL_CLEAR, None)
    assert (message["title"], body) == (prefix + "All clear: Lockdown", "Over.")


@pytest.mark.parametrize("drill", [True, False])
def test_a_drills_email_says_drill_in_its_subject_and_body(app, drill):
    notification = drill_notification(drill=drill)
    user = type("Person", (), {"name": "Sam", "email": "sam@school.test"})()
    with app.app_context():
        message = mail.compose(notification, user, mail.Links("https://x/open", None), app.config)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()

    if drill:
        assert message["Subject"] == "[Schoolbell] DRILL: EMERGENCY: Lockdown"
        assert mail.DRILL_LINE in text and mail.DRILL_LINE in html
    else:
        assert message["Subject"] == "[Schoolbell] EMERGENCY: Lockdown"
        assert "DRILL" not in text and "DRILL" not in html


def test_the_compose_form_sends_a_drill_only_as_an_emergency():
    from werkzeug.datastructures import MultiDict

    from webapp.dashboard.forms import ComposeInput

    def drill(priority: str) -> bool:
        form = MultiDict({"title": "T", "body": "B", "priority": priority, "drill": "1"})
        return ComposeInput.from_form(form).draft("Europe/Berlin").drill

    assert drill("emergency") is True
    assert drill("urgent") is False
    assert ComposeInput.from_form(MultiDict({"priority": "emergency"})).draft("UTC").drill is False
