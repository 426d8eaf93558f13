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


def test_channels_count_how_each_recipient_was_first_reached(db):
    """A tab, a device, an e-mail's link; pushes and e-mails sent but not yet seen."""
    from sqlalchemy import update

    from webapp.db import utcnow
    from webapp.models import Channel, Delivery
    from webapp.services.receipts import Receipt, record_receipts

    n = db.send()
    record_receipts(
        db.session,
        [
            Receipt(db.id("s7b_1"), n, S.DELIVERED, T1, Channel.TAB),
            Receipt(db.id("s7b_2"), n, S.DELIVERED, T1, Channel.PUSH),
            Receipt(db.id("g7b_1"), n, S.READ, T1, Channel.EMAIL),
        ],
    )
    # A later receipt through another channel keeps the first one.
    record_receipts(db.session, [Receipt(db.id("s7b_2"), n, S.READ, T2, Channel.TAB)])
    sent = utcnow()
    for handle, column in (("s7b_2", "pushed_at"), ("s7b_3", "pushed_at"), ("g7b_2", "emailed_at")):
        db.session.execute(
            update(Delivery)
            .where(Delivery.notification_id == n, Delivery.user_id == db.id(handle))
            .values({column: sent})
        )
    db.session.commit()
    states, channels = status.counts_by_state_and_channel(db.session, n)
    assert states == {"pending": 3, "delivered": 1, "read": 2, "acknowledged": 0}
    assert channels.as_dict() == {
        "tab": 1,
        "push": 1,
        "email": 1,
        "not_yet": 3,
        "pushed": 2,
        "emailed": 1,
    }
    assert {h: status.reached_by(db.delivery(n, h)) for h in FAMILIES_7B} == {
        "s7b_1": ("tab", "Open tab"),
        "s7b_2": ("push", "Push"),
        "s7b_3": ("push_sent", "Push sent"),
        "g7b_1": ("email", "E-mail"),
        "g7b_2": ("email_sent", "E-mail sent"),
        "g7b_3": ("not_yet", "Not yet"),
    }


FAMILIES_7B = ["s7b_1", "s7b_2", "s7b_3", "g7b_1", "g7b_2", "g7b_3"]
