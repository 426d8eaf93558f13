"""Replay: what a (re)connecting socket gets from the database, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from webapp.db import utcnow
from webapp.services import replay
from webapp.services.replay import replay_for

from .school_db import T1, S, dispose, own_school, school_on_backend, session_on, to_class


@pytest.fixture
def any_db(any_database_url, tmp_path):
    """A school of this test's own on SQLite and on PostgreSQL."""
    yield from own_school(any_database_url, tmp_path)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backlog(request, sqlite_template, tmp_path_factory):
    """A school of its own where s7b_1 has announcements in every situation replay must
    tell apart (built once per backend: the replay tests only read)."""
    app, school = school_on_backend(request, sqlite_template, tmp_path_factory, "backlog")
    for db in session_on(app, school):
        n = {
            "seen": db.send("Seen"),  # delivered
            "pending": db.send("Pending"),
            "to_confirm": db.send("Please confirm", require_ack=True),  # read only
            "confirmed": db.send("Confirmed", require_ack=True),  # acknowledged
            "expired": db.send("Expired"),  # pending, but expired
            "retracted": db.send("Retracted", require_ack=True),  # pending, but retracted
            "other_class": db.send("For 7a", audience=to_class("7a")),
            "later": db.send("Later", expires_at=utcnow() + timedelta(hours=1)),  # delivered
        }
        db.receipts(
            ("s7b_1", n["seen"], S.DELIVERED, T1),
            ("s7b_1", n["to_confirm"], S.READ, T1),
            ("s7b_1", n["confirmed"], S.ACKNOWLEDGED, T1),
            ("s7b_1", n["later"], S.DELIVERED, T1),
        )
        db.set_notification(n["expired"], expires_at=utcnow() - timedelta(seconds=1))
        db.set_notification(n["retracted"], retracted_at=utcnow())
    yield app, school, n
    dispose(app)


@pytest.fixture
def replayed(backlog):
    """replay(handle, last_id) -> the ids replayed to that user, on the backlog school."""
    app, school, _ = backlog
    for db in session_on(app, school):
        yield db.replay


def test_replay_without_a_last_id_sends_what_is_pending_or_awaits_confirmation(backlog, replayed):
    n = backlog[2]
    assert replayed("s7b_1", None) == [n["pending"], n["to_confirm"]]


REPLAY_AFTER = [
    (None, ["seen", "pending", "to_confirm", "confirmed", "later"]),  # last_id 0
    ("seen", ["pending", "to_confirm", "confirmed", "later"]),
    ("pending", ["pending", "to_confirm", "confirmed", "later"]),
    ("to_confirm", ["pending", "to_confirm", "confirmed", "later"]),
    ("confirmed", ["pending", "to_confirm", "later"]),
    ("expired", ["pending", "to_confirm", "later"]),
    ("later", ["pending", "to_confirm"]),
]


@pytest.mark.parametrize(
    ("after", "expected"), REPLAY_AFTER, ids=[str(after) for after, _ in REPLAY_AFTER]
)
def test_replay_sends_newer_pending_and_unconfirmed_in_id_order(backlog, replayed, after, expected):
    n = backlog[2]
    last_id = n[after] if after else 0
    assert replayed("s7b_1", last_id) == [n[name] for name in expected]


def test_replay_never_sends_expired_retracted_or_others_announcements(backlog, replayed):
    n = backlog[2]
    for last_id in (None, 0, n["seen"]):
        assert not set(replayed("s7b_1", last_id)) & {
            n["expired"],
            n["retracted"],
            n["other_class"],
        }
    # Everyone else in 7b still has all of theirs pending, except those two.
    assert replayed("g7b_2", None) == sorted(
        v for k, v in n.items() if k not in ("expired", "retracted", "other_class")
    )
    assert replayed("s7a_1", None) == [n["other_class"]]
    assert replayed("t7b", 0) == []
    assert replayed("gone", 0) == []


def test_replay_after_the_largest_id_a_client_may_send(backlog, replayed):
    """2^31-1, the largest id of an INTEGER column on PostgreSQL, works on both."""
    n = backlog[2]
    assert replayed("s7b_1", 2**31 - 1) == [n["pending"], n["to_confirm"]]


def test_replay_comes_with_the_author_name(any_db):
    by_teacher = any_db.send("From the teacher", by="t7b")
    [(notification, author)] = replay_for(any_db.session, any_db.id("s7b_2"), None)
    assert (notification.id, notification.title, author) == (by_teacher, "From the teacher", "T7B")


def test_an_announcement_expires_at_its_expiry_time(any_db):
    expires = utcnow() + timedelta(minutes=10)
    notification_id = any_db.send(expires_at=expires)
    assert any_db.replay("s7b_1", None, now=expires - timedelta(seconds=1)) == [notification_id]
    assert any_db.replay("s7b_1", None, now=expires) == []
    assert any_db.replay("s7b_1", None, now=expires + timedelta(days=1)) == []


def test_replay_sends_at_most_the_limit_oldest_first(any_db, monkeypatch):
    sent = [any_db.send(f"Backlog {n}") for n in range(5)]
    monkeypatch.setattr(replay, "REPLAY_LIMIT", 3)
    assert any_db.replay("s7b_1", None) == sent[:3]
    assert any_db.replay("s7b_1", sent[0]) == sent[:3]  # still pending: oldest first
    any_db.receipts(*[("s7b_1", n, S.DELIVERED, T1) for n in sent[:3]])
    assert any_db.replay("s7b_1", sent[2]) == sent[3:]
