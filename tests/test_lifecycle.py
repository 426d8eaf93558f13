"""An announcement's life after compose, service by service: scheduled sends (exactly
once, resolved when they go, late after downtime, cancelled never), edits (revisions,
a material change asks again), withdrawal and expiry (queued work cancelled), on SQLite
and PostgreSQL. Times are passed in (`now=`) where the rule depends on the clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from webapp.db import utcnow
from webapp.errors import Conflict, Forbidden, ValidationFailed
from webapp.models import (
    AuditEvent,
    Delivery,
    DeliveryState,
    Job,
    JobState,
    MemberRole,
    Membership,
    Notification,
    NotificationRevision,
    SchoolClass,
)
from webapp.services import edits, expiry, jobs, notifications, reach, scheduled, withdrawal
from webapp.services.edits import Edit
from webapp.services.notifications import Stage

from .test_notifications import draft, open_school, send


@pytest.fixture
def db(database_url, tmp_path, monkeypatch):
    """The school on SQLite."""
    yield from open_school(database_url, tmp_path, monkeypatch)


@pytest.fixture
def any_db(any_database_url, tmp_path, monkeypatch):
    """The school on SQLite and on PostgreSQL."""
    yield from open_school(any_database_url, tmp_path, monkeypatch)


SOON = timedelta(minutes=10)


def queued(db, kind: str, notification_id: int) -> list[Job]:
    db.session.rollback()
    return list(
        db.session.scalars(
            select(Job).where(
                Job.kind == kind,
                Job.notification_id == notification_id,
                Job.state == JobState.QUEUED,
            )
        )
    )


def deliveries_of(db, notification_id: int) -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.notification_id == notification_id)
    )


def audited(db, action: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
    )


def schedule(db, minutes: float = 10, actor: str = "admin", **changes):
    at = utcnow() + timedelta(minutes=minutes)
    result = send(db.session, db.user(actor), draft(send_at=at, **changes))
    return result, at


# Scheduling ---------------------------------------------------------------------------


def test_a_scheduled_send_stores_the_announcement_and_one_job_but_no_deliveries(any_db):
    result, at = schedule(any_db)
    n = result.notification
    assert result.scheduled and result.recipient_ids == []
    assert n.sent_at is None and n.send_at == at.replace(microsecond=at.microsecond)
    assert notifications.stage(n) is Stage.SCHEDULED
    assert deliveries_of(any_db, n.id) == 0
    (job,) = queued(any_db, notifications.SCHEDULED_SEND, n.id)
    assert job.due_at == at
    assert queued(any_db, reach.PUSH_FANOUT, n.id) == []  # fan-outs come with the send
    assert audited(any_db, "notification.scheduled") == 1


def test_send_at_within_seconds_of_now_sends_now(db):
    result = send(db.session, db.user("admin"), draft(send_at=utcnow() + timedelta(seconds=2)))
    assert not result.scheduled and len(result.recipient_ids) == 6


@pytest.mark.parametrize(
    ("offset", "code"),
    [(timedelta(hours=-1), "invalid_send_at"), (timedelta(days=400), "invalid_send_at")],
)
def test_send_at_in_the_past_or_too_far_ahead_is_refused(db, offset, code):
    with pytest.raises(ValidationFailed) as caught:
        send(db.session, db.user("admin"), draft(send_at=utcnow() + offset))
    assert caught.value.code == code


def test_expiry_and_deadline_must_come_after_a_scheduled_send(db):
    at = utcnow() + timedelta(hours=2)
    for changes in (
        {"expires_at": at - timedelta(hours=1)},
        {"confirm_by": at - timedelta(hours=1)},
    ):
        with pytest.raises(ValidationFailed):
            send(db.session, db.user("admin"), draft(send_at=at, **changes))
        db.session.rollback()


def test_the_due_send_resolves_the_audience_then_and_goes_once(any_db):
    result, at = schedule(any_db)
    nid = result.notification.id
    # A student joins 7b after the announcement was written: they get it too.
    newcomer = any_db.school.ids["s7a_1"]
    class_7b = any_db.session.scalar(select(SchoolClass).where(SchoolClass.name == "7b"))
    any_db.session.add(Membership(class_id=class_7b.id, user_id=newcomer, role=MemberRole.STUDENT))
    any_db.session.commit()
    sent = scheduled.send_due(any_db.session, nid, reach.Delays(), now=at + timedelta(seconds=1))
    # ... and so does their guardian (the announcement is for 7b's students and guardians).
    assert {newcomer, any_db.school.ids["g7a_1"]} <= set(sent.recipient_ids)
    assert len(sent.recipient_ids) == 8
    assert deliveries_of(any_db, nid) == 8
    assert not scheduled.is_late(sent.notification, 60)
    assert len(queued(any_db, reach.PUSH_FANOUT, nid)) == 1
    with pytest.raises(jobs.Cancel, match="already sent"):  # a second runner: nothing
        scheduled.send_due(any_db.session, nid, reach.Delays(), now=at + timedelta(seconds=2))
    any_db.session.rollback()
    assert deliveries_of(any_db, nid) == 8


def test_a_send_that_fell_due_while_the_server_was_down_is_marked_late(db):
    result, at = schedule(db)
    sent = scheduled.send_due(
        db.session, result.notification.id, reach.Delays(), now=at + timedelta(minutes=30)
    )
    assert scheduled.is_late(sent.notification, 60)
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "notification.sent")
    ).one()
    assert event.detail["late_s"] == 1800


def test_a_cancelled_send_never_goes(any_db):
    result, at = schedule(any_db)
    nid = result.notification.id
    _, change = withdrawal.withdraw(any_db.session, any_db.user("admin"), nid)
    assert change is None  # nobody had it: nothing to tell
    assert queued(any_db, notifications.SCHEDULED_SEND, nid) == []
    with pytest.raises(jobs.Cancel, match="cancelled"):
        scheduled.send_due(any_db.session, nid, reach.Delays(), now=at + timedelta(seconds=1))
    any_db.session.rollback()
    assert deliveries_of(any_db, nid) == 0
    assert notifications.stage(any_db.session.get(Notification, nid)) is Stage.CANCELLED


def test_a_scheduled_send_whose_author_lost_the_class_fails_with_the_reason(db):
    teacher = db.user("t7b")
    result, at = schedule(db, actor="t7b")
    nid = result.notification.id
    db.session.execute(Membership.__table__.delete().where(Membership.user_id == teacher.id))
    db.session.commit()
    with pytest.raises(jobs.GiveUp):
        scheduled.send_due(db.session, nid, reach.Delays(), now=at + timedelta(seconds=1))
    db.session.rollback()
    n = db.session.get(Notification, nid)
    assert notifications.stage(n) is Stage.FAILED and "7b" in n.send_error
    assert deliveries_of(db, nid) == 0


def test_a_scheduled_send_can_be_moved_and_retargeted_before_it_goes(db):
    result, at = schedule(db)
    nid = result.notification.id
    later = at + timedelta(hours=1)
    from webapp.services.audience import AudienceSpec, ClassTarget

    edited = edits.edit(
        db.session,
        db.user("admin"),
        nid,
        Edit(
            send_at=later,
            audience=AudienceSpec(classes=(ClassTarget("7a", frozenset(["students"])),)),
        ),
    )
    assert edited.change is None and set(edited.changed) == {"send_at", "audience"}
    (job,) = queued(db, notifications.SCHEDULED_SEND, nid)
    assert job.due_at == later
    sent = scheduled.send_due(db.session, nid, reach.Delays(), now=later)
    assert sorted(sent.recipient_ids) == sorted(
        db.school.ids[h] for h in db.school.ids if h.startswith("s7a")
    )


# Editing ------------------------------------------------------------------------------


def test_an_edit_keeps_every_revision_and_marks_it_edited(any_db):
    result = send(any_db.session, any_db.user("admin"), draft())
    nid = result.notification.id
    edited = edits.edit(
        any_db.session, any_db.user("admin"), nid, Edit(title="Trip on Friday", body="Bring *tea*")
    )
    assert edited.change == "update" and edited.changed == ["title", "body"]
    n = any_db.session.get(Notification, nid)
    assert n.revision == 2 and n.edited_at is not None
    assert n.title == "Trip on Friday" and "<em>tea</em>" in n.body_html
    titles = [
        r.title
        for r in any_db.session.scalars(
            select(NotificationRevision)
            .where(NotificationRevision.notification_id == nid)
            .order_by(NotificationRevision.revision)
        )
    ]
    assert titles == ["Trip tomorrow", "Trip on Friday"]
    event = any_db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "notification.edited")
    ).one()
    assert event.detail["revision"] == 2 and event.detail["changed"] == ["title", "body"]


def test_a_material_change_asks_everyone_again(db):
    result = send(db.session, db.user("admin"), draft(require_ack=True))
    nid = result.notification.id
    db.session.execute(
        Delivery.__table__.update()
        .where(Delivery.notification_id == nid)
        .values(state=DeliveryState.ACKNOWLEDGED, read_at=utcnow(), acknowledged_at=utcnow())
    )
    db.session.commit()
    edited = edits.edit(db.session, db.user("admin"), nid, Edit(body="Now at 9:00", reconfirm=True))
    assert edited.change == "reconfirm"
    db.session.rollback()
    states = set(db.session.scalars(select(Delivery.state).where(Delivery.notification_id == nid)))
    assert states == {DeliveryState.DELIVERED}
    assert (
        db.session.scalar(
            select(NotificationRevision.reconfirm).where(
                NotificationRevision.notification_id == nid, NotificationRevision.revision == 2
            )
        )
        is True
    )


def test_a_plain_edit_keeps_receipts(db):
    result = send(db.session, db.user("admin"), draft(require_ack=True))
    nid = result.notification.id
    db.session.execute(
        Delivery.__table__.update()
        .where(Delivery.notification_id == nid)
        .values(state=DeliveryState.ACKNOWLEDGED, acknowledged_at=utcnow())
    )
    db.session.commit()
    edits.edit(db.session, db.user("admin"), nid, Edit(title="Typo fixed"))
    states = set(db.session.scalars(select(Delivery.state).where(Delivery.notification_id == nid)))
    assert states == {DeliveryState.ACKNOWLEDGED}


def test_an_edit_queues_replacing_pushes_for_devices_already_reached(db):
    result = send(db.session, db.user("admin"), draft())
    nid = result.notification.id
    from webapp.models import PushSubscription

    reached, other = db.school.ids["s7b_1"], db.school.ids["s7b_2"]
    for user_id in (reached, other):
        db.session.add(
            PushSubscription(
                user_id=user_id,
                endpoint=f"https://fcm.googleapis.com/x/{user_id}",
                p256dh="k",
                auth="a",
            )
        )
    db.session.execute(
        Delivery.__table__.update()
        .where(Delivery.notification_id == nid, Delivery.user_id == reached)
        .values(pushed_at=utcnow())
    )
    db.session.commit()
    edits.edit(db.session, db.user("admin"), nid, Edit(title="New time"))
    pushes = queued(db, reach.PUSH_UPDATE, nid)
    assert len(pushes) == 1 and pushes[0].key.endswith(":r2")


def test_nothing_to_change_and_others_edits_are_refused(db):
    result = send(db.session, db.user("admin"), draft())
    nid = result.notification.id
    with pytest.raises(ValidationFailed) as caught:
        edits.edit(db.session, db.user("admin"), nid, Edit(title="Trip tomorrow"))
    assert caught.value.code == "nothing_to_change"
    db.session.rollback()
    # The teacher of 7b may watch it (it went to 7b) but not change or withdraw it.
    with pytest.raises(Forbidden):
        edits.edit(db.session, db.user("t7b"), nid, Edit(title="Mine now"))
    db.session.rollback()
    with pytest.raises(Forbidden):
        withdrawal.withdraw(db.session, db.user("t7b"), nid)


def test_send_at_and_audience_of_a_sent_announcement_cannot_change(db):
    result = send(db.session, db.user("admin"), draft())
    with pytest.raises(Conflict) as caught:
        edits.edit(
            db.session,
            db.user("admin"),
            result.notification.id,
            Edit(send_at=utcnow() + SOON),
        )
    assert caught.value.code == "not_scheduled"


def test_a_moved_expiry_queues_a_new_expiry_job(db):
    first = utcnow() + timedelta(hours=1)
    result = send(db.session, db.user("admin"), draft(expires_at=first))
    nid = result.notification.id
    (job,) = queued(db, expiry.EXPIRE, nid)
    assert job.due_at == first
    edits.edit(db.session, db.user("admin"), nid, Edit(expires_at=first + timedelta(hours=1)))
    due = sorted(j.due_at for j in queued(db, expiry.EXPIRE, nid))
    assert due == [first, first + timedelta(hours=1)]
    with pytest.raises(jobs.Cancel, match="changed"):  # the old one does nothing
        expiry.expire(db.session, nid, first, now=first)


# Withdrawal and expiry ----------------------------------------------------------------


def test_withdrawing_cancels_everything_queued_and_cannot_happen_twice(any_db):
    result = send(any_db.session, any_db.user("admin"), draft(expires_at=utcnow() + SOON))
    nid = result.notification.id
    assert queued(any_db, reach.PUSH_FANOUT, nid)
    _, change = withdrawal.withdraw(any_db.session, any_db.user("admin"), nid)
    assert change == "retract"
    for kind in (reach.PUSH_FANOUT, reach.EMAIL_FANOUT, expiry.EXPIRE):
        assert queued(any_db, kind, nid) == []
    n = any_db.session.get(Notification, nid)
    assert notifications.stage(n) is Stage.WITHDRAWN
    with pytest.raises(Conflict):
        withdrawal.withdraw(any_db.session, any_db.user("admin"), nid)
    any_db.session.rollback()
    assert audited(any_db, "notification.withdrawn") == 1


def test_expiry_cancels_what_is_queued(db):
    at = utcnow() + SOON
    result = send(db.session, db.user("admin"), draft(expires_at=at))
    nid = result.notification.id
    expiry.expire(db.session, nid, at, now=at)
    assert queued(db, reach.PUSH_FANOUT, nid) == []
    assert notifications.stage(db.session.get(Notification, nid), now=at) is Stage.EXPIRED
    db.session.rollback()
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "notification.expired")
        )
        == 1
    )


def test_an_expiry_job_that_runs_early_comes_back_at_the_time(db):
    at = utcnow() + SOON
    result = send(db.session, db.user("admin"), draft(expires_at=at))
    with pytest.raises(jobs.RetryLater):
        expiry.expire(db.session, result.notification.id, at, now=at - timedelta(minutes=1))


def test_every_job_kind_has_a_handler(app):
    from webapp.services import load_job_handlers

    load_job_handlers()
    for kind in (notifications.SCHEDULED_SEND, expiry.EXPIRE, *reach.CHANGE_PUSHES):
        assert kind in jobs.HANDLERS


def test_a_retried_scheduled_send_is_the_same_one_even_after_its_time(db, monkeypatch):
    at = utcnow() + timedelta(seconds=30)
    first = send(db.session, db.user("admin"), draft(send_at=at), idempotency_key="k-1")
    # The retry comes when the time is near (it would mean "now") and after it passed.
    for later in (at - timedelta(seconds=2), at + timedelta(hours=2)):
        monkeypatch.setattr(notifications, "utcnow", lambda later=later: later)
        again = send(db.session, db.user("admin"), draft(send_at=at), idempotency_key="k-1")
        assert again.created is False and again.notification.id == first.notification.id


def test_moving_a_scheduled_send_past_its_expiry_is_refused(db):
    result, at = schedule(db, expires_at=utcnow() + timedelta(hours=1))
    with pytest.raises(ValidationFailed) as caught:
        edits.edit(
            db.session,
            db.user("admin"),
            result.notification.id,
            Edit(send_at=at + timedelta(hours=2)),
        )
    assert caught.value.code == "invalid_expires_at"
