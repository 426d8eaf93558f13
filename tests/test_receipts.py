"""Receipts: deliveries only move forward, in batches from sockets and one at a time from
pages, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import pytest

from webapp.errors import NotFound, ValidationFailed
from webapp.models import Delivery, DeliveryState
from webapp.services import receipts, status
from webapp.services.receipts import record_receipts

from .school_db import T0, T1, T2, T3, S, session_on

FAMILIES_7B = ["s7b_1", "s7b_2", "s7b_3", "g7b_1", "g7b_2", "g7b_3"]


@pytest.fixture
def db(shared_school):
    """The shared school (both backends), with a fresh session."""
    yield from session_on(*shared_school)


def stamps(d: Delivery) -> tuple[DeliveryState, datetime | None, datetime | None, datetime | None]:
    return d.state, d.delivered_at, d.read_at, d.acknowledged_at


# Each person's receipts arrive one call at a time, in this order; then their row must be:
FORWARD_ONLY = {
    "s7b_1": ([(S.READ, T1)], (S.READ, T1, T1, None)),
    "s7b_2": ([(S.ACKNOWLEDGED, T1)], (S.ACKNOWLEDGED, T1, T1, T1)),
    "s7b_3": ([(S.DELIVERED, T1), (S.READ, T2), (S.DELIVERED, T3)], (S.READ, T1, T2, None)),
    "g7b_1": (
        [(S.ACKNOWLEDGED, T1), (S.READ, T2), (S.DELIVERED, T3)],
        (S.ACKNOWLEDGED, T1, T1, T1),
    ),
    "g7b_2": (
        [(S.DELIVERED, T1), (S.DELIVERED, T2), (S.READ, T3), (S.READ, T0)],
        (S.READ, T1, T3, None),
    ),
    "g7b_3": (
        [(S.DELIVERED, T0), (S.READ, T1), (S.ACKNOWLEDGED, T2), (S.ACKNOWLEDGED, T3)],
        (S.ACKNOWLEDGED, T0, T1, T2),
    ),
}


def test_receipts_only_move_forward_and_never_rewrite_a_time(db):
    notification_id = db.send(require_ack=True)
    rounds = max(len(steps) for steps, _ in FORWARD_ONLY.values())
    for n in range(rounds):
        batch = [
            (handle, notification_id, *steps[n])
            for handle, (steps, _) in FORWARD_ONLY.items()
            if n < len(steps)
        ]
        assert db.receipts(*batch) == {notification_id}
    for handle, (_, expected) in FORWARD_ONLY.items():
        assert stamps(db.delivery(notification_id, handle)) == expected, handle


def test_a_fresh_delivery_is_pending_without_times(db):
    notification_id = db.send()
    row = db.delivery(notification_id, "s7b_1")
    assert stamps(row) == (S.PENDING, None, None, None)
    assert row.created_at is not None


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (S.DELIVERED, (S.DELIVERED, T1, None, None)),
        (S.READ, (S.READ, T1, T1, None)),
        (S.ACKNOWLEDGED, (S.ACKNOWLEDGED, T1, T1, T1)),
    ],
)
def test_a_later_state_fills_the_times_it_skipped(db, state, expected):
    notification_id = db.send()
    db.receipts(("s7b_1", notification_id, state, T1))
    assert stamps(db.delivery(notification_id, "s7b_1")) == expected
    assert stamps(db.delivery(notification_id, "s7b_2")) == (S.PENDING, None, None, None)


def test_a_batch_of_mixed_states_for_many_people_in_one_call(db):
    first, second = db.send("First"), db.send("Second")
    batch = [
        ("s7b_1", first, S.DELIVERED, T1),
        ("s7b_2", first, S.READ, T1),
        ("s7b_3", first, S.ACKNOWLEDGED, T1),
        ("g7b_1", first, S.DELIVERED, T2),
        ("g7b_2", first, S.READ, T2),
        ("s7b_1", second, S.ACKNOWLEDGED, T3),
        ("s7b_2", second, S.DELIVERED, T3),
        ("g7b_3", second, S.READ, T3),
        ("s7a_1", first, S.READ, T1),  # not a recipient: changes nothing, creates nothing
    ]
    assert db.receipts(*batch) == {first, second}
    assert stamps(db.delivery(first, "s7b_1")) == (S.DELIVERED, T1, None, None)
    assert stamps(db.delivery(first, "s7b_2")) == (S.READ, T1, T1, None)
    assert stamps(db.delivery(first, "s7b_3")) == (S.ACKNOWLEDGED, T1, T1, T1)
    assert stamps(db.delivery(first, "g7b_1")) == (S.DELIVERED, T2, None, None)
    assert stamps(db.delivery(first, "g7b_2")) == (S.READ, T2, T2, None)
    assert stamps(db.delivery(first, "g7b_3")) == (S.PENDING, None, None, None)
    assert stamps(db.delivery(second, "s7b_1")) == (S.ACKNOWLEDGED, T3, T3, T3)
    assert stamps(db.delivery(second, "s7b_2")) == (S.DELIVERED, T3, None, None)
    assert stamps(db.delivery(second, "g7b_3")) == (S.READ, T3, T3, None)
    assert db.delivery(first, "s7a_1") is None
    assert status.counts(db.session, first) == {
        "pending": 1,
        "delivered": 2,
        "read": 2,
        "acknowledged": 1,
    }
    assert status.counts(db.session, second) == {
        "pending": 3,
        "delivered": 1,
        "read": 1,
        "acknowledged": 1,
    }


def test_a_large_batch_is_written(db):
    sent = [db.send(f"Burst {n}") for n in range(10)]
    batch = [
        (h, n, state, T1)
        for n in sent
        for h, state in zip(FAMILIES_7B, [S.DELIVERED, S.READ, S.ACKNOWLEDGED] * 2, strict=True)
    ]
    assert db.receipts(*batch) == set(sent)
    for n in sent:
        assert status.counts(db.session, n) == {
            "pending": 0,
            "delivered": 2,
            "read": 2,
            "acknowledged": 2,
        }


def test_an_empty_batch_touches_nothing(db):
    assert record_receipts(db.session, []) == set()


def test_a_recipient_is_known_and_nobody_else(db):
    notification_id = db.send()
    assert receipts.is_recipient(db.session, db.id("g7b_1"), notification_id)
    assert not receipts.is_recipient(db.session, db.id("g7a_1"), notification_id)
    assert not receipts.is_recipient(db.session, db.id("g7b_1"), 10**9)


# Receipts from pages ------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["delivered", "read", "acknowledged"])
def test_record_one_moves_a_recipients_delivery(db, state):
    notification_id = db.send()
    receipts.record_one(db.session, db.id("g7b_3"), notification_id, state)
    row = db.delivery(notification_id, "g7b_3")
    assert row.state.value == state
    assert row.delivered_at is not None


@pytest.mark.parametrize("handle", ["s7a_1", "t7b", "admin", "gone"])
def test_record_one_refuses_someone_who_is_not_a_recipient(db, handle):
    notification_id = db.send()
    with pytest.raises(NotFound) as caught:
        receipts.record_one(db.session, db.id(handle), notification_id, "read")
    assert caught.value.code == "notification_not_found"
    assert status.counts(db.session, notification_id)["read"] == 0
    assert db.delivery(notification_id, handle) is None


def test_record_one_refuses_an_unknown_notification(db):
    with pytest.raises(NotFound) as caught:
        receipts.record_one(db.session, db.id("s7b_1"), 10**9, "read")
    assert caught.value.code == "notification_not_found"


@pytest.mark.parametrize("state", ["pending", "seen", "READ", "", "Acknowledged"])
def test_record_one_refuses_a_bad_state(db, state):
    notification_id = db.send()
    with pytest.raises(ValidationFailed) as caught:
        receipts.record_one(db.session, db.id("s7b_1"), notification_id, state)
    assert caught.value.code == "invalid_state"
    assert stamps(db.delivery(notification_id, "s7b_1")) == (S.PENDING, None, None, None)


def test_record_one_does_not_move_back(db):
    notification_id = db.send()
    receipts.record_one(db.session, db.id("s7b_1"), notification_id, "acknowledged")
    receipts.record_one(db.session, db.id("s7b_1"), notification_id, "delivered")
    assert db.delivery(notification_id, "s7b_1").state is S.ACKNOWLEDGED
