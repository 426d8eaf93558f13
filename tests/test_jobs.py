"""The job queue on SQLite and PostgreSQL: a key is queued once, a due job is claimed by
one runner only, a lease brings back a crashed runner's job, and each way a handler
ends is recorded (done, cancelled, failed, retried with backoff, out of attempts)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from webapp.db import session_scope, utcnow
from webapp.models import Job, JobState
from webapp.services import jobs

from .conftest import make_test_app

CALLS: list[str] = []


@jobs.handler("test.ok")
def _ok(app, job):
    CALLS.append(job.key)


@jobs.handler("test.record")
def _record(app, job):
    def record(session):
        jobs.enqueue(session, "test.ok", f"recorded-by:{job.key}")

    return record


@jobs.handler("test.cancel")
def _cancel(app, job):
    raise jobs.Cancel("a receipt came first")


@jobs.handler("test.give-up")
def _give_up(app, job):
    raise jobs.GiveUp("410 gone")


@jobs.handler("test.later")
def _later(app, job):
    raise jobs.RetryLater("429", after_s=30)


@jobs.handler("test.backoff")
def _backoff(app, job):
    raise jobs.RetryLater("503")


@jobs.handler("test.defer")
def _defer(app, job):
    raise jobs.Defer("quiet hours", utcnow() + timedelta(hours=8))


@jobs.handler("test.crash")
def _crash(app, job):
    raise RuntimeError("a bug")


@pytest.fixture
def app(any_database_url, tmp_path):
    app = make_test_app(any_database_url, tmp_path, JOB_MAX_ATTEMPTS=3)
    yield app
    app.extensions["schoolbell.db"].kw["bind"].dispose()


def queue(app, kind: str, key: str, **kwargs) -> None:
    with session_scope(app) as session:
        jobs.enqueue(session, kind, key, **kwargs)
        session.commit()


def job(app, key: str) -> Job:
    with session_scope(app) as session:
        return session.scalar(select(Job).where(Job.key == key))


def claim(app, limit: int = 10, **kwargs) -> list[jobs.JobRef]:
    with session_scope(app) as session:
        return jobs.claim(session, limit=limit, lease_s=60, **kwargs)


def test_a_key_is_queued_once(app):
    queue(app, "test.ok", "k1")
    queue(app, "test.ok", "k1", payload={"second": True})
    with session_scope(app) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1
    assert job(app, "k1").payload is None


def test_only_due_jobs_are_claimed_and_a_lease_keeps_others_off(app):
    now = utcnow()
    queue(app, "test.ok", "now", due_at=now - timedelta(seconds=1))
    queue(app, "test.ok", "later", due_at=now + timedelta(minutes=5))
    first = claim(app)
    assert [j.key for j in first] == ["now"]
    assert first[0].attempts == 1
    assert claim(app) == []  # leased
    # The runner died: once its lease ends, the job is claimed again (and "later" too).
    again = claim(app, now=now + timedelta(minutes=6))
    assert [j.key for j in again] == ["now", "later"]
    assert again[0].attempts == 2


@pytest.mark.parametrize(
    "kind, state, error",
    [
        ("test.ok", JobState.DONE, None),
        ("test.cancel", JobState.CANCELLED, "a receipt came first"),
        ("test.give-up", JobState.FAILED, "410 gone"),
        ("no.such.kind", JobState.FAILED, "no handler for 'no.such.kind'"),
    ],
)
def test_how_a_handler_ends_is_recorded(app, kind, state, error):
    queue(app, kind, "k")
    (claimed,) = claim(app)
    assert jobs.run(app, claimed) is state
    stored = job(app, "k")
    assert (stored.state, stored.last_error, stored.leased_until) == (state, error, None)
    assert stored.finished_at is not None
    assert claim(app, now=utcnow() + timedelta(days=1)) == []  # never runs again


def test_retry_later_waits_as_asked(app):
    queue(app, "test.later", "k")
    (claimed,) = claim(app)
    before = utcnow()
    assert jobs.run(app, claimed) is None
    stored = job(app, "k")
    assert stored.state is JobState.QUEUED and stored.last_error == "429"
    assert before + timedelta(seconds=29) <= stored.due_at <= utcnow() + timedelta(seconds=31)
    assert claim(app) == []
    assert [j.key for j in claim(app, now=before + timedelta(seconds=31))] == ["k"]


def test_a_deferred_job_waits_without_using_up_its_attempts(app):
    queue(app, "test.defer", "k")
    for _ in range(app.config["JOB_MAX_ATTEMPTS"] + 2):  # more than it would be allowed
        (claimed,) = claim(app, now=utcnow() + timedelta(days=1))
        assert jobs.run(app, claimed) is None
    stored = job(app, "k")
    assert stored.state is JobState.QUEUED and stored.attempts == 0
    assert stored.last_error == "quiet hours" and stored.due_at > utcnow() + timedelta(hours=7)
    assert claim(app) == []


@pytest.mark.parametrize("kind", ["test.backoff", "test.crash"])
def test_failures_back_off_then_give_up_after_the_last_attempt(app, kind):
    queue(app, kind, "k")
    waits = []
    now = utcnow()
    for _attempt in range(3):
        (claimed,) = claim(app, now=now)
        jobs.run(app, claimed)
        stored = job(app, "k")
        waits.append((stored.due_at - utcnow()).total_seconds())
        now = stored.due_at + timedelta(seconds=1)
    assert waits[0] == pytest.approx(jobs.BACKOFF_BASE_S, abs=1.5)
    assert waits[1] == pytest.approx(2 * jobs.BACKOFF_BASE_S, abs=1.5)
    stored = job(app, "k")
    assert stored.state is JobState.FAILED
    assert stored.last_error.startswith("gave up after 3 attempts")


def test_runners_racing_for_jobs_never_claim_the_same_one(app):
    """Four runners (threads with their own connections) claim 200 due jobs at once:
    each job is claimed exactly once (SKIP LOCKED on PostgreSQL, the write lock on
    SQLite)."""
    with session_scope(app) as session:
        for n in range(200):
            jobs.enqueue(session, "test.ok", f"race:{n}")
        session.commit()
    claimed: list[list[str]] = [[] for _ in range(4)]

    def runner(mine: list[str]) -> None:
        while True:
            batch = claim(app, limit=7)
            if not batch:
                return
            mine.extend(j.key for j in batch)

    threads = [threading.Thread(target=runner, args=(mine,)) for mine in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    every = [key for mine in claimed for key in mine]
    assert sorted(every) == sorted(f"race:{n}" for n in range(200))
    assert sum(1 for mine in claimed if mine) >= 2  # they really raced


def test_cancelling_an_announcements_jobs_leaves_others(app, make_user):
    from webapp.models import Notification, Priority

    with session_scope(app) as session:
        ids = []
        for title in ("one", "two"):
            n = Notification(
                title=title,
                body="b",
                body_html="<p>b</p>",
                priority=Priority.NORMAL,
            )
            session.add(n)
            session.flush()
            ids.append(n.id)
            jobs.enqueue(session, "test.ok", f"job:{n.id}", notification_id=n.id)
        session.commit()
        assert jobs.cancel_for_notification(session, ids[0], "withdrawn") == 1
        session.commit()
    assert job(app, f"job:{ids[0]}").state is JobState.CANCELLED
    assert job(app, f"job:{ids[1]}").state is JobState.QUEUED


def test_a_handlers_record_of_success_commits_with_the_jobs_end(app):
    queue(app, "test.record", "k")
    (claimed,) = claim(app)
    assert jobs.run(app, claimed) is JobState.DONE
    assert job(app, "k").state is JobState.DONE
    assert job(app, "recorded-by:k").state is JobState.QUEUED


def test_claimed_jobs_that_never_ran_go_back_without_costing_an_attempt(app):
    for n in range(3):
        queue(app, "test.ok", f"k{n}")
    claimed = claim(app)
    assert claim(app) == []
    with session_scope(app) as session:
        jobs.release(session, claimed[1:])
    again = claim(app)
    assert [(j.key, j.attempts) for j in again] == [("k1", 1), ("k2", 1)]


def test_a_job_waits_while_its_process_holds_background_work(app):
    """A broadcast began: the job's end is written only once the hold is over."""
    asked = []

    def hold() -> float:
        asked.append(utcnow())
        return 0.05 if len(asked) < 3 else 0

    app.extensions[jobs.HOLD_EXTENSION] = hold
    queue(app, "test.ok", "k")
    (claimed,) = claim(app)
    assert jobs.run(app, claimed) is JobState.DONE
    assert len(asked) == 3
    assert job(app, "k").finished_at >= asked[-1]
