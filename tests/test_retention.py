"""Retention on SQLite and PostgreSQL: the daily job deletes exactly what is older than
its period (one second either side of the boundary), in small batches, keeps what is
younger or still to be sent, audits its counts, and is queued once per day however many
processes start. The clock is passed in (`now=`), as elsewhere."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from webapp.db import session_scope
from webapp.models import (
    AuditEvent,
    Delivery,
    DeliveryState,
    Job,
    JobState,
    Notification,
    NotificationRevision,
    Target,
    UsedLink,
)
from webapp.realtime import protocol
from webapp.services import jobs, replay, retention, status

from .conftest import make_test_app
from .school_db import own_school

# The clock the runs are given: an hour ahead of the real one, so everything the school's
# set-up wrote (audit entries, deliveries) is young, and T0 long ago.
NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
T0 = NOW - timedelta(days=1000)
DAYS, AUDIT_DAYS, LINK_TTL_S = 30, 60, 3600
POLICY = retention.Policy(days=DAYS, audit_days=AUDIT_DAYS, link_ttl_s=LINK_TTL_S)
CUTOFF = NOW - timedelta(days=DAYS)
SECOND = timedelta(seconds=1)


@pytest.fixture
def any_db(any_database_url, tmp_path):
    yield from own_school(any_database_url, tmp_path)


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of two rows and one announcement: every loop turns more than once."""
    monkeypatch.setattr(retention, "BATCH_ROWS", 2)
    monkeypatch.setattr(retention, "BATCH_NOTIFICATIONS", 1)


def count(session, model, *where) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def sent(db, title: str, at: datetime) -> int:
    """An announcement to 7b's students and guardians (6 people), sent at `at`."""
    notification_id = db.send(title)
    db.set_notification(notification_id, created_at=at, sent_at=at)
    return notification_id


def scheduled(db, title: str, created_at: datetime, **values) -> int:
    """An announcement written at `created_at` and scheduled for later (not sent)."""
    notification_id = db.send(title, send_at=datetime.now(UTC) + timedelta(days=3))
    db.set_notification(notification_id, created_at=created_at, **values)
    return notification_id


def finished_job(session, key: str, finished_at: datetime, state=JobState.DONE) -> None:
    session.add(Job(kind="test", key=key, state=state, due_at=finished_at, finished_at=finished_at))
    session.commit()


def test_deletes_exactly_what_is_older_than_the_period(any_db, small_batches):
    db, session = any_db, any_db.session
    old = sent(db, "Old", CUTOFF - SECOND)
    young = sent(db, "Young", CUTOFF + SECOND)
    db.receipts(
        ("s7b_1", old, DeliveryState.READ, CUTOFF), ("s7b_1", young, DeliveryState.READ, NOW)
    )
    cancelled_old = scheduled(db, "Cancelled", CUTOFF - SECOND, retracted_at=CUTOFF)
    cancelled_young = scheduled(db, "Cancelled later", CUTOFF + SECOND, retracted_at=NOW)
    waiting = scheduled(db, "Still to go", T0)  # written long ago, not sent yet: kept
    failed_old = scheduled(db, "Failed", T0, send_error="gone", send_at=CUTOFF - SECOND)
    failed_young = scheduled(db, "Failed lately", T0, send_error="gone", send_at=CUTOFF + SECOND)
    finished_job(session, "done-old", CUTOFF - SECOND)
    finished_job(session, "failed-old", CUTOFF - SECOND, JobState.FAILED)
    finished_job(session, "done-young", CUTOFF + SECOND)
    session.add(Job(kind="test", key="queued-old", due_at=CUTOFF - timedelta(days=9)))
    for at in (
        NOW - timedelta(days=AUDIT_DAYS) - SECOND,
        NOW - timedelta(days=AUDIT_DAYS) + SECOND,
    ):
        session.add(AuditEvent(action="test.event", at=at, subject=at.isoformat()))
    for nonce, used_at in (
        ("old", NOW - timedelta(seconds=LINK_TTL_S + 1)),
        ("young", NOW - timedelta(seconds=LINK_TTL_S - 1)),
    ):
        session.add(UsedLink(nonce=nonce, purpose="open", used_at=used_at))
    session.commit()
    deleted_notifications = [old, cancelled_old, failed_old]
    jobs_of_old = count(session, Job, Job.notification_id.in_(deleted_notifications))
    young_counts = status.counts(session, young)
    told: list[list[int]] = []

    counts = retention.purge(session, POLICY, now=NOW, on_deleted=told.append)

    assert sorted(id for batch in told for id in batch) == sorted(deleted_notifications)
    remaining = set(session.scalars(select(Notification.id)))
    assert remaining == {young, cancelled_young, waiting, failed_young}
    assert count(session, Delivery, Delivery.notification_id == old) == 0
    assert count(session, Delivery, Delivery.notification_id == young) == 6
    assert status.counts(session, young) == young_counts
    for model in (Target, NotificationRevision):
        assert count(session, model, model.notification_id.in_(deleted_notifications)) == 0
        assert count(session, model, model.notification_id == young) >= 1
    assert count(session, Job, Job.notification_id.in_(deleted_notifications)) == 0
    keys = set(session.scalars(select(Job.key).where(Job.kind == "test")))
    assert keys == {"done-young", "queued-old"}
    audit_left = set(
        session.scalars(select(AuditEvent.subject).where(AuditEvent.action == "test.event"))
    )
    assert audit_left == {(NOW - timedelta(days=AUDIT_DAYS) + SECOND).isoformat()}
    assert set(session.scalars(select(UsedLink.nonce))) == {"young"}
    assert (counts.notifications, counts.deliveries, counts.audit_events, counts.used_links) == (
        3,
        6,
        1,
        1,
    )
    assert counts.jobs == jobs_of_old + 2
    run = session.scalar(select(AuditEvent).where(AuditEvent.action == "retention.run"))
    assert run.detail["notifications"] == 3 and run.detail["deliveries"] == 6
    assert run.detail["retention_days"] == DAYS


def test_a_second_run_finds_nothing_more(any_db):
    db, session = any_db, any_db.session
    sent(db, "Old", CUTOFF - SECOND)
    assert retention.purge(session, POLICY, now=NOW).notifications == 1
    again = retention.purge(session, POLICY, now=NOW)
    assert (again.notifications, again.deliveries, again.jobs) == (0, 0, 0)


def test_a_period_of_zero_keeps_everything_forever(any_db):
    db, session = any_db, any_db.session
    ancient = sent(db, "Ancient", T0 - timedelta(days=3650))
    session.add(AuditEvent(action="test.event", at=T0 - timedelta(days=3650)))
    session.commit()
    counts = retention.purge(session, retention.Policy(0, 0, LINK_TTL_S), now=NOW)
    assert (counts.notifications, counts.audit_events) == (0, 0)
    assert session.get(Notification, ancient) is not None
    assert count(session, AuditEvent, AuditEvent.action == "test.event") == 1


def test_replay_and_status_never_refer_to_a_deleted_announcement(any_db):
    """A student who never opened an old announcement had it replayed on every connect;
    once it is deleted, replay and the status read model go on without it."""
    db, session = any_db, any_db.session
    old = sent(db, "Unread for a year", CUTOFF - SECOND)
    young = sent(db, "Fresh", CUTOFF + SECOND)
    assert db.replay("s7b_2", None, now=NOW) == [old, young]
    retention.purge(session, POLICY, now=NOW)
    assert db.replay("s7b_2", None, now=NOW) == [young]
    # A tab that still shows it (it was away during the run) is told to drop it.
    shown = ((old, 1), (young, 1))
    changes = replay.changed_since_shown(session, db.id("s7b_2"), shown, now=NOW)
    assert [(change, row.id) for change, row in changes] == [("expire", old)]
    assert protocol.change(*changes[0]) == {"type": "expire", "id": old}
    assert status.counts(session, old) == {s.value: 0 for s in DeliveryState}


# The daily job -------------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    "now, day",
    [
        (datetime(2026, 3, 2, 1, 59, 59, tzinfo=UTC), date(2026, 3, 1)),  # 02:59:59 Berlin
        (datetime(2026, 3, 2, 2, 0, 0, tzinfo=UTC), date(2026, 3, 2)),  # 03:00 Berlin
    ],
)
def test_the_run_of_a_day_is_due_at_three_in_the_morning_school_time(now, day):
    assert retention.last_due_day(now, BERLIN) == day
    assert (
        retention.run_time(day, BERLIN) <= now < retention.run_time(day, BERLIN) + timedelta(days=1)
    )


def test_the_job_is_queued_once_however_many_processes_start(any_database_url, tmp_path):
    apps = [make_test_app(any_database_url, tmp_path / str(n)) for n in range(3)]
    try:
        for app in apps:
            retention.queue_first_run(app)
        with session_scope(apps[0]) as session:
            rows = session.scalars(select(Job).where(Job.kind == retention.RETENTION)).all()
        assert len(rows) == 1 and rows[0].state is JobState.QUEUED
        assert rows[0].due_at > datetime.now(UTC) + retention.START_DELAY - timedelta(minutes=1)
        claimed = []
        later = datetime.now(UTC) + retention.START_DELAY + timedelta(seconds=1)
        for app in apps:  # each "process" tries to claim it when due: one gets it
            with session_scope(app) as session:
                claimed += jobs.claim(session, limit=10, lease_s=60, now=later)
        assert [job.kind for job in claimed] == [retention.RETENTION]
    finally:
        for app in apps:
            app.extensions["schoolbell.db"].kw["bind"].dispose()


def test_the_job_deletes_audits_and_queues_the_next_day(any_database_url, tmp_path):
    from .school_db import built_school, dispose, session_on

    app, school = built_school(any_database_url, tmp_path)
    app.config.update(RETENTION_DAYS=DAYS)
    try:
        for db in session_on(app, school):
            real_now = datetime.now(UTC)
            old = sent(db, "Old", real_now - timedelta(days=DAYS, seconds=5))
            young = sent(db, "Young", real_now - timedelta(days=DAYS) + timedelta(minutes=5))
            retention.queue_first_run(app)
            with session_scope(app) as session:  # as if its start delay were over
                session.execute(
                    update(Job).where(Job.kind == retention.RETENTION).values(due_at=real_now)
                )
                session.commit()
                claimed = jobs.claim(session, limit=10, lease_s=60)
                (job,) = [j for j in claimed if j.kind == retention.RETENTION]
                jobs.release(session, [j for j in claimed if j is not job])  # a slow machine
            assert jobs.run(app, job) is JobState.DONE
            session = db.session
            session.expire_all()
            assert session.get(Notification, old) is None
            assert session.get(Notification, young) is not None
            assert count(session, AuditEvent, AuditEvent.action == "retention.run") == 1
            today = retention.last_due_day(real_now, ZoneInfo("UTC"))
            keys = set(session.scalars(select(Job.key).where(Job.kind == retention.RETENTION)))
            assert keys == {retention.job_key(today), retention.job_key(today + timedelta(days=1))}
            nxt = session.scalar(
                select(Job).where(Job.key == retention.job_key(today + timedelta(days=1)))
            )
            assert nxt.state is JobState.QUEUED
            assert nxt.due_at == retention.run_time(today + timedelta(days=1), ZoneInfo("UTC"))
    finally:
        dispose(app)
