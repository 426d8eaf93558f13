"""Retention: what Schoolbell keeps, it keeps for a stated time, then deletes.

A daily `retention` job (services/jobs.py) deletes:

- announcements older than RETENTION_DAYS, with everything that hangs off them (their
  deliveries, i.e. receipts and roll-call answers, targets, revisions and jobs). Their
  age counts from when they were sent; one cancelled before it went, from when it was
  written; a scheduled send that failed for good, from when it was due. One still
  waiting to be sent is never deleted, however old it is: it has not happened yet;
- finished jobs (done, failed, cancelled) that finished longer ago than RETENTION_DAYS;
- audit entries older than AUDIT_RETENTION_DAYS;
- the nonces of used single-use links once those links have expired (LINK_TTL_S): the
  link's own signature refuses it from then on, so its nonce guards nothing.

A period of 0 keeps that kind of record forever. "Older than" is strict: a record
exactly RETENTION_DAYS old stays until the next run.

Deleting is done in short transactions (BATCH_ROWS rows at a time, and pausing for
broadcasts in between), never one long one: on SQLite each transaction holds the
database's write lock, and a sender must not wait behind a year of receipts. Each run
is audited with its counts.

The job runs once a day at RUN_AT, school time. Its key names the day
(`retention:2026-03-02`), so however many processes queue it, it exists once, and the
runner's claim gives it to one of them; each run queues the next day's before it starts
deleting, so a run that fails does not break the chain. A process that starts queues
the latest run due (START_DELAY later), unless it was queued or ran already.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import gevent
from flask import Flask
from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from ..db import session_scope, utcnow
from ..models import AuditEvent, Delivery, Job, JobState, Notification, UsedLink
from . import audit, jobs

log = logging.getLogger(__name__)
RETENTION = "retention"
RUN_AT = time(3, 0)  # school time: the quietest hour of the day
BATCH_NOTIFICATIONS = 20  # announcements per batch (each may have thousands of receipts)
BATCH_ROWS = 500  # rows deleted per transaction
# A process that starts with a run due waits this long before it deletes anything: a
# start (or a restart with thousands of tabs reconnecting and replaying) is busy enough.
START_DELAY = timedelta(minutes=15)


@dataclass(frozen=True)
class Policy:
    """How long each kind of record is kept (days; 0: forever)."""

    days: int
    audit_days: int
    link_ttl_s: int

    @classmethod
    def from_config(cls, config) -> Policy:
        return cls(config["RETENTION_DAYS"], config["AUDIT_RETENTION_DAYS"], config["LINK_TTL_S"])


@dataclass
class Counts:
    """What one run deleted."""

    notifications: int = 0
    deliveries: int = 0
    jobs: int = 0
    audit_events: int = 0
    used_links: int = 0


def is_old(cutoff: datetime):
    """WHERE clause: announcements whose age, as this module counts it, began before
    `cutoff` (sent before it; cancelled unsent and written before it; failed to send
    and due before it). Waiting scheduled ones never match."""
    n = Notification
    return or_(
        n.sent_at < cutoff,
        and_(n.sent_at.is_(None), n.retracted_at.is_not(None), n.created_at < cutoff),
        and_(
            n.sent_at.is_(None),
            n.retracted_at.is_(None),
            n.send_error.is_not(None),
            n.send_at < cutoff,
        ),
    )


def purge(
    session: Session,
    policy: Policy,
    now: datetime | None = None,
    *,
    pause: Callable[[], None] = lambda: None,
    on_deleted: Callable[[list[int]], None] = lambda ids: None,
) -> Counts:
    """Delete what the policy no longer keeps, in short transactions, and audit the
    run; return the counts. `pause()` runs between transactions (a web process lets
    broadcasts go first); `on_deleted(ids)` after each batch of announcements is
    committed (realtime: open tabs drop them)."""
    now = now or utcnow()
    counts = Counts()
    if policy.days:
        cutoff = now - timedelta(days=policy.days)
        while ids := _old_notification_ids(session, cutoff):
            _delete_notifications(session, ids, counts, pause)
            on_deleted(ids)
            pause()
        finished = select(Job.id).where(Job.state != JobState.QUEUED, Job.finished_at < cutoff)
        counts.jobs += _delete_in_batches(session, Job, finished, pause)
    if policy.audit_days:
        old = select(AuditEvent.id).where(AuditEvent.at < now - timedelta(days=policy.audit_days))
        counts.audit_events = _delete_in_batches(session, AuditEvent, old, pause)
    expired = select(UsedLink.nonce).where(
        UsedLink.used_at < now - timedelta(seconds=policy.link_ttl_s)
    )
    counts.used_links = _delete_in_batches(session, UsedLink, expired, pause, key="nonce")
    audit.record(
        session,
        "retention.run",
        subject="retention",
        retention_days=policy.days,
        audit_retention_days=policy.audit_days,
        **asdict(counts),
    )
    session.commit()
    return counts


def _old_notification_ids(session: Session, cutoff: datetime) -> list[int]:
    """The next batch of announcements to delete, oldest first."""
    ids = list(
        session.scalars(
            select(Notification.id)
            .where(is_old(cutoff))
            .order_by(Notification.id)
            .limit(BATCH_NOTIFICATIONS)
        )
    )
    session.commit()  # end the read: on SQLite it holds the write lock
    return ids


def _delete_notifications(
    session: Session, ids: list[int], counts: Counts, pause: Callable[[], None]
) -> None:
    """Delete these announcements: their jobs and deliveries a batch at a time, then
    the rows themselves (their targets and revisions, a few each, go with them)."""
    counts.jobs += _delete_in_batches(
        session, Job, select(Job.id).where(Job.notification_id.in_(ids)), pause
    )
    counts.deliveries += _delete_in_batches(
        session, Delivery, select(Delivery.id).where(Delivery.notification_id.in_(ids)), pause
    )
    result = session.execute(
        delete(Notification)
        .where(Notification.id.in_(ids))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    counts.notifications += result.rowcount or 0


def _delete_in_batches(
    session: Session, model, chosen, pause: Callable[[], None], *, key: str = "id"
) -> int:
    """DELETE the rows `chosen` (a SELECT of their keys) BATCH_ROWS per transaction;
    return how many went."""
    column = getattr(model, key)
    total = 0
    while True:
        batch = chosen.limit(BATCH_ROWS).scalar_subquery()
        result = session.execute(
            delete(model).where(column.in_(batch)).execution_options(synchronize_session=False)
        )
        session.commit()
        deleted = result.rowcount or 0
        total += deleted
        if deleted < BATCH_ROWS:
            return total
        pause()


# The daily job -----------------------------------------------------------------------


def run_time(day: date, zone: ZoneInfo) -> datetime:
    """When the run for `day` is due: RUN_AT on that day, school time."""
    return datetime.combine(day, RUN_AT, tzinfo=zone)


def job_key(day: date) -> str:
    return f"{RETENTION}:{day.isoformat()}"


def last_due_day(now: datetime, zone: ZoneInfo) -> date:
    """The latest day whose run time has come (today after RUN_AT, else yesterday)."""
    today = now.astimezone(zone).date()
    return today if run_time(today, zone) <= now else today - timedelta(days=1)


def queue(session: Session, day: date, zone: ZoneInfo, due_at: datetime | None = None) -> None:
    """Queue the run for `day` (not committed); once queued or run, never again."""
    jobs.enqueue(
        session,
        RETENTION,
        job_key(day),
        due_at=due_at or run_time(day, zone),
        payload={"day": day.isoformat()},
    )


def queue_first_run(app: Flask) -> None:
    """At a job runner's start: the latest run that is due (in START_DELAY), unless it
    was queued (by the day before's run, or another process) or ran already."""
    zone = ZoneInfo(app.config["TIMEZONE"])
    now = utcnow()
    with session_scope(app) as session:
        queue(session, last_due_day(now, zone), zone, due_at=now + START_DELAY)
        session.commit()


jobs.AT_START.append(queue_first_run)


def _pause(app: Flask) -> None:
    """Between two transactions: let a broadcast (and anything else waiting) go first."""
    gevent.sleep(0)
    jobs.yield_to_broadcasts(app)


@jobs.handler(RETENTION)
def run_retention(app: Flask, job: jobs.JobRef) -> None:
    """The `retention` job: queue tomorrow's run, then delete what is past its time."""
    zone = ZoneInfo(app.config["TIMEZONE"])
    day = date.fromisoformat((job.payload or {})["day"])
    announcer = jobs.announcer(app)
    with session_scope(app) as session:
        # The day after this run's, or after the last day due (a run days overdue: the
        # server was off), whichever is later.
        next_day = max(day, last_due_day(utcnow(), zone)) + timedelta(days=1)
        queue(session, next_day, zone)
        session.commit()
        counts = purge(
            session,
            Policy.from_config(app.config),
            pause=lambda: _pause(app),
            on_deleted=announcer.notifications_deleted,
        )
    log.info("retention: deleted %s", ", ".join(f"{v} {k}" for k, v in asdict(counts).items()))
