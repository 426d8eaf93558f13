"""The status read model: counts per state and per-recipient rows, on SQLite and
PostgreSQL (the status page itself: test_status_page.py)."""

from __future__ import annotations

import pytest

from webapp.services import status

from .school_db import T1, T2, S, session_on


@pytest.fixture
def db(shared_school):
    """The shared school (both backends), with a fresh session."""
    yield from session_on(*shared_school)


def test_counts_have_every_state_with_zeros(db):
    notification_id = db.send()
    assert status.counts(db.session, notification_id) == {
        "pending": 6,
        "delivered": 0,
        "read": 0,
        "acknowledged": 0,
    }
    db.receipts(("s7b_1", notification_id, S.READ, T1), ("g7b_1", notification_id, S.READ, T1))
    assert status.counts(db.session, notification_id) == {
        "pending": 4,
        "delivered": 0,
        "read": 2,
        "acknowledged": 0,
    }
    assert list(status.counts(db.session, notification_id)) == [
        "pending",
        "delivered",
        "read",
        "acknowledged",
    ]
    assert status.counts(db.session, 10**9) == {
        "pending": 0,
        "delivered": 0,
        "read": 0,
        "acknowledged": 0,
    }


@pytest.mark.parametrize(
    ("state", "handles"),
    [
        (None, ["G7B_1", "G7B_2", "G7B_3", "S7B_1", "S7B_2", "S7B_3"]),
        ("pending", ["G7B_2", "G7B_3", "S7B_3"]),
        ("delivered", ["S7B_1"]),
        ("read", ["G7B_1", "S7B_2"]),
        ("acknowledged", []),
    ],
)
def test_rows_filter_by_state_and_sort_by_name(db, state, handles):
    notification_id = db.send()
    db.receipts(
        ("s7b_1", notification_id, S.DELIVERED, T1),
        ("s7b_2", notification_id, S.READ, T1),
        ("g7b_1", notification_id, S.READ, T2),
    )
    rows = status.rows(db.session, notification_id, state=state)
    assert [user.name for _, user in rows] == handles
    assert all(d.user_id == user.id and d.notification_id == notification_id for d, user in rows)
    if state:
        assert {d.state.value for d, _ in rows} <= {state}


def test_rows_are_paged(db):
    notification_id = db.send()
    names = [u.name for _, u in status.rows(db.session, notification_id)]
    page = status.rows(db.session, notification_id, limit=2, offset=3)
    assert [u.name for _, u in page] == names[3:5]
