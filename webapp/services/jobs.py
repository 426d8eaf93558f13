"""The job queue: background work (pushes, e-mails, their fan-out) in the `jobs` table.

A job is queued once (its `key` is unique) with a due time. A runner claims due jobs in
one short transaction: `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several processes
never claim the same job; on SQLite the transaction holds the write lock (BEGIN
IMMEDIATE) for one UPDATE. A claim leases the job (`leased_until`): a runner that dies
mid-job leaves it to be claimed again when the lease ends. Then the runner calls the
job's handler, outside any transaction, and records how it ended.

Handlers (`@handler("push")`) take the app and a `JobRef`, open short sessions of their
own, and never hold a transaction across a network call. They end by returning (done) or
by raising `RetryLater`, `Defer` (not now: quiet hours; the attempt is not counted),
`GiveUp` or `Cancel`; any other exception is retried with backoff, up to
JOB_MAX_ATTEMPTS in all. A handler may return a `Record`: the writes that
record its success, made in the same transaction that marks the job done (one commit
instead of two, for work done 10,000 times an announcement).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import gevent
from flask import Flask
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .. import metrics
from ..db import session_scope, utcnow
from ..models import Job, JobState

log = logging.getLogger(__name__)
_jobs = Job.__table__
BACKOFF_BASE_S = 5
BACKOFF_MAX_S = 3600
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class JobRef:
    """A claimed job, as its handler sees it (a plain value: no session attached)."""

    id: int
    kind: str
    key: str
    attempts: int  # including this one
    notification_id: int | None
    delivery_id: int | None
    subscription_id: int | None
    payload: dict[str, Any] | None


class JobEnded(Exception):
    """Raised by a handler to end its job other than by success."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RetryLater(JobEnded):
    """Try again after `after_s` seconds (None: exponential backoff), while attempts last."""

    def __init__(self, reason: str, after_s: float | None = None):
        super().__init__(reason)
        self.after_s = after_s


class Defer(JobEnded):
    """Not now, and not a failure (quiet hours): run again at `until`, the attempt not
    counted."""

    def __init__(self, reason: str, until: datetime):
        super().__init__(reason)
        self.until = until


class GiveUp(JobEnded):
    """A permanent failure: the job is marked failed and never runs again."""


class Cancel(JobEnded):
    """The job is no longer needed (a receipt came first, the person opted out, ...)."""


Record = Callable[[Session], None]  # a handler's success, written with the job's end
Handler = Callable[[Flask, JobRef], Record | None]
HANDLERS: dict[str, Handler] = {}
# Called with the app whenever a job runner starts: recurring jobs queue their first run
# there (by key, so however many processes start, it is queued once).
AT_START: list[Callable[[Flask], None]] = []


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of `kind`."""

    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return register


def insert_ignoring_duplicates(session: Session):
    """INSERT INTO jobs ... ON CONFLICT DO NOTHING, for this session's backend: a job
    whose key is already queued (or done) is not queued again."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(_jobs).on_conflict_do_nothing(index_elements=["key"])


def enqueue(
    session: Session,
    kind: str,
    key: str,
    *,
    due_at: datetime | None = None,
    notification_id: int | None = None,
    delivery_id: int | None = None,
    subscription_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """Queue a job in the caller's transaction (not committed here); a key already
    queued, or already run, queues nothing."""
    now = utcnow()
    session.execute(
        insert_ignoring_duplicates(session).values(
            kind=kind,
            key=key,
            state=JobState.QUEUED,
            due_at=due_at or now,
            attempts=0,
            notification_id=notification_id,
            delivery_id=delivery_id,
            subscription_id=subscription_id,
            payload=payload,
            created_at=now,
        )
    )


def claim(
    session: Session, *, limit: int, lease_s: float, now: datetime | None = None
) -> list[JobRef]:
    """Lease up to `limit` due jobs, oldest due first, and commit. Jobs leased by a
    runner whose lease has not ended are skipped, and so (on PostgreSQL) are rows
    another process is claiming at this moment."""
    now = now or utcnow()
    due = (
        select(Job.id)
        .where(
            Job.state == JobState.QUEUED,
            Job.due_at <= now,
            (Job.leased_until.is_(None)) | (Job.leased_until < now),
        )
        .order_by(Job.due_at, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(
        update(Job)
        .where(Job.id.in_(due.scalar_subquery()))
        .values(leased_until=now + timedelta(seconds=lease_s), attempts=Job.attempts + 1)
        .returning(
            Job.id,
            Job.kind,
            Job.key,
            Job.attempts,
            Job.notification_id,
            Job.delivery_id,
            Job.subscription_id,
            Job.payload,
        )
        .execution_options(synchronize_session=False)
    ).all()
    session.commit()
    return sorted((JobRef(*row) for row in rows), key=lambda job: job.id)


def waiting_by_kind(session: Session, now: datetime | None = None) -> dict[str, int]:
    """How many jobs of each kind are due and held by no runner: the queue's backlog
    (what `claim` would take next), for /metrics."""
    now = now or utcnow()
    rows = session.execute(
        select(Job.kind, func.count())
        .where(
            Job.state == JobState.QUEUED,
            Job.due_at <= now,
            (Job.leased_until.is_(None)) | (Job.leased_until < now),
        )
        .group_by(Job.kind)
    )
    return {kind: count for kind, count in rows}


def finish(
    session: Session,
    job: JobRef,
    state: JobState,
    *,
    error: str | None = None,
    record: Record | None = None,
) -> None:
    """Record how a job ended (done, failed or cancelled), with its handler's `record`
    of success, and commit."""
    if record is not None:
        record(session)
    session.execute(
        _FINISH,
        {
            "job_id": job.id,
            "state": state,
            "now": utcnow(),
            "error": error[:MAX_ERROR_CHARS] if error else None,
        },
    )
    session.commit()


# Built once: a statement run for every job costs more to build than to execute.
_FINISH = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"))
    .values(
        state=bindparam("state", type_=_jobs.c.state.type),
        leased_until=None,
        finished_at=bindparam("now", type_=_jobs.c.finished_at.type),
        last_error=bindparam("error", type_=_jobs.c.last_error.type),
    )
)


def retry(
    session: Session, job: JobRef, reason: str, *, after_s: float | None, max_attempts: int
) -> bool:
    """Queue a job again after `after_s` (None: backoff by attempts), or fail it when
    its attempts are used up; commit. Returns whether it will run again."""
    if job.attempts >= max_attempts:
        finish(
            session, job, JobState.FAILED, error=f"gave up after {job.attempts} attempts: {reason}"
        )
        return False
    if after_s is None:
        after_s = min(BACKOFF_BASE_S * 2 ** (job.attempts - 1), BACKOFF_MAX_S)
    session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(
            due_at=utcnow() + timedelta(seconds=after_s),
            leased_until=None,
            last_error=reason[:MAX_ERROR_CHARS],
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return True


class Announcer(Protocol):
    """What a job handler tells open tabs through, after its commit: the realtime
    runtime of its process (realtime/live.py), which publishes to every process."""

    def publish_sent(self, result: Any) -> None: ...  # a notifications.SendResult

    def publish_changed(self, notification_id: int, change: str) -> None: ...

    def notifications_deleted(self, notification_ids: list[int]) -> None: ...


def announcer(app: Flask) -> Announcer:
    """This process's realtime runtime, for a handler to publish what it committed."""
    return app.extensions["schoolbell.live"]


HOLD_EXTENSION = "schoolbell.jobs.hold"


def yield_to_broadcasts(app: Flask) -> None:
    """Wait while this process says background work should (a broadcast began here a
    moment ago: worker.JobRunner's `hold`). Called before a job starts, between a
    handler's CPU-heavy steps, and before its end is written, so that a broadcast to
    thousands of tabs is never queued behind more than one step of each running job."""
    hold = app.extensions.get(HOLD_EXTENSION)
    if hold is None:
        return
    while (wait_s := hold()) > 0:
        gevent.sleep(wait_s)


def run(app: Flask, job: JobRef) -> JobState | None:
    """Run one claimed job's handler and record the outcome; return the state it ended
    in (None: queued again)."""
    fn = HANDLERS.get(job.kind)
    outcome: JobState | None
    error: str | None = None
    retry_after: float | None = None
    record: Record | None = None
    deferred: Defer | None = None
    if fn is None:
        outcome, error = JobState.FAILED, f"no handler for {job.kind!r}"
    else:
        try:
            record = fn(app, job)
            outcome = JobState.DONE
        except Cancel as exc:
            outcome, error = JobState.CANCELLED, exc.reason
        except Defer as exc:
            outcome, deferred = None, exc
        except GiveUp as exc:
            outcome, error = JobState.FAILED, exc.reason
        except RetryLater as exc:
            outcome, error, retry_after = None, exc.reason, exc.after_s
        except Exception as exc:  # a bug or an outage: log it, try again later
            log.exception("job %s (attempt %d) failed", job.key, job.attempts)
            outcome, error = None, f"{type(exc).__name__}: {exc}"
    yield_to_broadcasts(app)
    with session_scope(app) as session:
        if deferred is not None:
            defer(session, job, deferred.until, deferred.reason)
            result = "deferred"
        elif outcome is None:
            again = retry(
                session,
                job,
                error or "",
                after_s=retry_after,
                max_attempts=app.config["JOB_MAX_ATTEMPTS"],
            )
            if not again:
                log.warning("job %s failed for good: %s", job.key, error)
                outcome = JobState.FAILED
            result = "retry" if again else outcome.value
        else:
            finish(session, job, outcome, error=error, record=record)
            result = outcome.value
    metrics.job_ended(job.kind, result)  # pushes and e-mails by result (once it is written)
    return outcome


def defer(session: Session, job: JobRef, until: datetime, reason: str) -> None:
    """Queue a job again for `until` without counting this attempt; commit."""
    session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(
            due_at=until,
            leased_until=None,
            attempts=Job.attempts - 1,
            last_error=reason[:MAX_ERROR_CHARS],
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()


def release(session: Session, claimed: list[JobRef]) -> None:
    """Hand claimed jobs that never ran back to the queue (their claim not counted as
    an attempt), and commit."""
    session.execute(
        update(Job)
        .where(Job.id.in_([job.id for job in claimed]), Job.state == JobState.QUEUED)
        .values(leased_until=None, attempts=Job.attempts - 1)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def move(session: Session, key: str, due_at: datetime) -> int:
    """Give a queued job (by key) a new due time (not committed); return how many moved
    (0 when it is not queued, or running right now)."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(
            Job.key == key,
            Job.state == JobState.QUEUED,
            (Job.leased_until.is_(None)) | (Job.leased_until < now),
        )
        .values(due_at=due_at, leased_until=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def cancel_for_notification(session: Session, notification_id: int, reason: str) -> int:
    """Cancel every queued job of an announcement (not committed); return how many."""
    result = session.execute(
        update(Job)
        .where(Job.notification_id == notification_id, Job.state == JobState.QUEUED)
        .values(state=JobState.CANCELLED, finished_at=utcnow(), last_error=reason)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0
