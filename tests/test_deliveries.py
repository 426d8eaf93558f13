"""Receipts, replay and status of announcements, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from webapp.db import get_session, utcnow
from webapp.errors import NotFound, ValidationFailed
from webapp.models import Delivery, DeliveryState, Notification, User
from webapp.services import deliveries
from webapp.services.audience import AudienceSpec, ClassTarget
from webapp.services.deliveries import Receipt, record_receipts, replay_for
from webapp.services.notifications import Draft, send

from . import school as school_module
from .conftest import make_test_app
from .databases import sqlite_copy
from .school import build_school

T0 = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)
T1, T2, T3 = (T0 + timedelta(minutes=n) for n in (1, 2, 3))
S = DeliveryState
STUDENTS_7B = ["s7b_1", "s7b_2", "s7b_3"]
FAMILIES_7B = [*STUDENTS_7B, "g7b_1", "g7b_2", "g7b_3"]


def to_class(name: str, *parts: str) -> AudienceSpec:
    return AudienceSpec(classes=(ClassTarget(name, frozenset(parts or ("students",))),))


class SchoolDb:
    """A school on one database, a session on it, and helpers to send and inspect."""

    def __init__(self, app, school, session):
        self.app, self.school, self.session = app, school, session

    def user(self, handle: str) -> User:
        return self.session.get(User, self.school.ids[handle])

    def id(self, handle: str) -> int:
        return self.school.ids[handle]

    def send(
        self,
        title: str = "Notice",
        *,
        by: str = "admin",
        audience: AudienceSpec | None = None,
        **fields,
    ) -> int:
        draft = replace(
            Draft(
                title=title,
                body="Body",
                audience=audience or to_class("7b", "students", "guardians"),
            ),
            **fields,
        )
        return send(self.session, self.user(by), draft).notification.id

    def delivery(self, notification_id: int, handle: str) -> Delivery:
        """The delivery row as stored now."""
        self.session.expire_all()
        return self.session.scalar(
            select(Delivery).where(
                Delivery.notification_id == notification_id, Delivery.user_id == self.id(handle)
            )
        )

    def receipts(self, *items: tuple[str, int, DeliveryState, datetime]) -> set[int]:
        return record_receipts(
            self.session, [Receipt(self.id(h), n, state, at) for h, n, state, at in items]
        )

    def set_notification(self, notification_id: int, **values) -> None:
        """Change a notification directly in the database (expiry, retraction)."""
        self.session.execute(
            update(Notification).where(Notification.id == notification_id).values(**values)
        )
        self.session.commit()

    def replay(self, handle: str, last_id: int | None, **kwargs) -> list[int]:
        self.session.expire_all()
        return [n.id for n, _ in replay_for(self.session, self.id(handle), last_id, **kwargs)]


def built_school(url: str, directory):
    """An app on `url` with build_school's people (no password hashing: faster)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(school_module, "SIGN_IN_HANDLES", frozenset())
        app = make_test_app(url, directory)
        return app, build_school(app)


def session_on(app, school):
    """A SchoolDb with a session of its own inside an app context."""
    with app.app_context():
        session = get_session()
        yield SchoolDb(app, school, session)
        session.rollback()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_school(request, sqlite_template, tmp_path_factory):
    """Like `any_database_url` + build_school, once per module and backend. Tests that
    only look at the announcements they send themselves share it (keeps the suite fast)."""
    directory = tmp_path_factory.mktemp("deliveries")
    if request.param == "sqlite":
        url = sqlite_copy(sqlite_template, directory)
    else:
        url = request.getfixturevalue("postgres").create()
    app, school = built_school(url, directory)
    yield app, school
    app.extensions["schoolbell.db"].kw["bind"].dispose()


@pytest.fixture
def db(shared_school):
    """The shared school (both backends), with a fresh session."""
    yield from session_on(*shared_school)


@pytest.fixture
def any_db(any_database_url, tmp_path):
    """A school of this test's own on SQLite and on PostgreSQL."""
    app, school = built_school(any_database_url, tmp_path)
    yield from session_on(app, school)
    app.extensions["schoolbell.db"].kw["bind"].dispose()


def stamps(d: Delivery) -> tuple[DeliveryState, datetime | None, datetime | None, datetime | None]:
    return d.state, d.delivered_at, d.read_at, d.acknowledged_at


# Receipts ------------------------------------------------------------------------------------

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
    assert deliveries.counts(db.session, first) == {
        "pending": 1,
        "delivered": 2,
        "read": 2,
        "acknowledged": 1,
    }
    assert deliveries.counts(db.session, second) == {
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
        assert deliveries.counts(db.session, n) == {
            "pending": 0,
            "delivered": 2,
            "read": 2,
            "acknowledged": 2,
        }


def test_an_empty_batch_touches_nothing(db):
    assert record_receipts(db.session, []) == set()


# Replay ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def history(request, sqlite_template, tmp_path_factory):
    """A school of its own where s7b_1 has announcements in every situation replay must
    tell apart (built once per backend: the replay tests only read)."""
    directory = tmp_path_factory.mktemp("history")
    if request.param == "sqlite":
        url = sqlite_copy(sqlite_template, directory)
    else:
        url = request.getfixturevalue("postgres").create()
    app, school = built_school(url, directory)
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
    app.extensions["schoolbell.db"].kw["bind"].dispose()


@pytest.fixture
def replayed(history):
    """replay(handle, last_id) -> the ids replayed to that user, on the history school."""
    app, school, _ = history
    for db in session_on(app, school):
        yield db.replay


def test_replay_without_a_last_id_sends_what_is_pending_or_awaits_confirmation(history, replayed):
    n = history[2]
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
def test_replay_sends_newer_pending_and_unconfirmed_in_id_order(history, replayed, after, expected):
    n = history[2]
    last_id = n[after] if after else 0
    assert replayed("s7b_1", last_id) == [n[name] for name in expected]


def test_replay_never_sends_expired_retracted_or_others_announcements(history, replayed):
    n = history[2]
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


def test_replay_after_the_largest_id_a_client_may_send(history, replayed):
    """2^31-1, the largest id of an INTEGER column on PostgreSQL, works on both."""
    n = history[2]
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
    monkeypatch.setattr(deliveries, "REPLAY_LIMIT", 3)
    assert any_db.replay("s7b_1", None) == sent[:3]
    assert any_db.replay("s7b_1", sent[0]) == sent[:3]  # still pending: oldest first
    any_db.receipts(*[("s7b_1", n, S.DELIVERED, T1) for n in sent[:3]])
    assert any_db.replay("s7b_1", sent[2]) == sent[3:]


def test_a_recipient_is_known_and_nobody_else(db):
    notification_id = db.send()
    assert deliveries.is_recipient(db.session, db.id("g7b_1"), notification_id)
    assert not deliveries.is_recipient(db.session, db.id("g7a_1"), notification_id)
    assert not deliveries.is_recipient(db.session, db.id("g7b_1"), 10**9)


# Status -------------------------------------------------------------------------------------


def test_counts_have_every_state_with_zeros(db):
    notification_id = db.send()
    assert deliveries.counts(db.session, notification_id) == {
        "pending": 6,
        "delivered": 0,
        "read": 0,
        "acknowledged": 0,
    }
    db.receipts(("s7b_1", notification_id, S.READ, T1), ("g7b_1", notification_id, S.READ, T1))
    assert deliveries.counts(db.session, notification_id) == {
        "pending": 4,
        "delivered": 0,
        "read": 2,
        "acknowledged": 0,
    }
    assert list(deliveries.counts(db.session, notification_id)) == [
        "pending",
        "delivered",
        "read",
        "acknowledged",
    ]
    assert deliveries.counts(db.session, 10**9) == {
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
    rows = deliveries.rows(db.session, notification_id, state=state)
    assert [user.name for _, user in rows] == handles
    assert all(d.user_id == user.id and d.notification_id == notification_id for d, user in rows)
    if state:
        assert {d.state.value for d, _ in rows} <= {state}


def test_rows_are_paged(db):
    notification_id = db.send()
    names = [u.name for _, u in deliveries.rows(db.session, notification_id)]
    page = deliveries.rows(db.session, notification_id, limit=2, offset=3)
    assert [u.name for _, u in page] == names[3:5]


# Receipts from pages ------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["delivered", "read", "acknowledged"])
def test_record_one_moves_a_recipients_delivery(db, state):
    notification_id = db.send()
    deliveries.record_one(db.session, db.id("g7b_3"), notification_id, state)
    row = db.delivery(notification_id, "g7b_3")
    assert row.state.value == state
    assert row.delivered_at is not None


@pytest.mark.parametrize("handle", ["s7a_1", "t7b", "admin", "gone"])
def test_record_one_refuses_someone_who_is_not_a_recipient(db, handle):
    notification_id = db.send()
    with pytest.raises(NotFound) as caught:
        deliveries.record_one(db.session, db.id(handle), notification_id, "read")
    assert caught.value.code == "notification_not_found"
    assert deliveries.counts(db.session, notification_id)["read"] == 0
    assert db.delivery(notification_id, handle) is None


def test_record_one_refuses_an_unknown_notification(db):
    with pytest.raises(NotFound) as caught:
        deliveries.record_one(db.session, db.id("s7b_1"), 10**9, "read")
    assert caught.value.code == "notification_not_found"


@pytest.mark.parametrize("state", ["pending", "seen", "READ", "", "Acknowledged"])
def test_record_one_refuses_a_bad_state(db, state):
    notification_id = db.send()
    with pytest.raises(ValidationFailed) as caught:
        deliveries.record_one(db.session, db.id("s7b_1"), notification_id, state)
    assert caught.value.code == "invalid_state"
    assert stamps(db.delivery(notification_id, "s7b_1")) == (S.PENDING, None, None, None)


def test_record_one_does_not_move_back(db):
    notification_id = db.send()
    deliveries.record_one(db.session, db.id("s7b_1"), notification_id, "acknowledged")
    deliveries.record_one(db.session, db.id("s7b_1"), notification_id, "delivered")
    assert db.delivery(notification_id, "s7b_1").state is S.ACKNOWLEDGED


# Who may see an announcement's status -------------------------------------------------------------

VIEWERS = [
    # (author, audience, handle, may see)
    ("admin", "class 7b", "admin", True),
    ("admin", "class 7b", "t7b", True),
    ("admin", "class 7b", "t7a", False),
    ("admin", "class 7b", "s7b_1", False),
    ("admin", "class 7b", "g7b_1", False),
    ("t7b", "class 7b", "t7b", True),
    ("t7b", "class 7b", "admin", True),
    ("t7b", "class 7b", "t7a", False),
    ("t7b", "people", "t7b", True),
    ("t7b", "people", "admin", True),
    ("t7b", "people", "t7a", False),
    ("t7b", "people", "s7b_1", False),
    ("admin", "everyone", "t7b", False),
    ("admin", "everyone", "s7a_1", False),
]


def test_status_is_visible_to_author_admins_and_teachers_of_the_class(db):
    specs = {
        "class 7b": to_class("7b", "students", "guardians"),
        "people": AudienceSpec(users=(db.school.emails["s7b_1"], db.school.emails["g7b_1"])),
        "everyone": AudienceSpec(everyone=True),
    }
    sent = {
        (author, audience): db.send(by=author, audience=specs[audience])
        for author, audience, _, _ in VIEWERS
    }
    for author, audience, handle, may_see in VIEWERS:
        case = (author, audience, handle)
        notification_id = sent[author, audience]
        viewer = db.user(handle)
        notification = db.session.get(Notification, notification_id)
        assert deliveries.can_view_status(db.session, viewer, notification) is may_see, case
        if may_see:
            assert deliveries.viewable(db.session, viewer, notification_id) is notification
        else:
            with pytest.raises(NotFound) as caught:
                deliveries.viewable(db.session, viewer, notification_id)
            assert caught.value.code == "notification_not_found", case


@pytest.mark.parametrize("handle", ["admin", "t7b", "s7b_1"])
def test_an_unknown_id_looks_the_same_as_a_forbidden_one(db, handle):
    with pytest.raises(NotFound) as unknown:
        deliveries.viewable(db.session, db.user(handle), 98765)
    assert unknown.value.code == "notification_not_found"
    assert "98765" in unknown.value.message
