"""Sending announcements: validation, the audience resolved once and whether to confirm
(prepare), one pending delivery per recipient, audit, and Idempotency-Key retries."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from webapp.db import get_session, utcnow
from webapp.errors import Conflict, Forbidden, NotFound, ValidationFailed
from webapp.models import (
    AuditEvent,
    Delivery,
    DeliveryState,
    Notification,
    Priority,
    Role,
    Target,
    TargetKind,
    User,
)
from webapp.services import classes, notifications
from webapp.services.audience import AudienceSpec, ClassTarget
from webapp.services.notifications import Draft

from . import school as school_module
from .conftest import make_test_app
from .databases import sqlite_copy
from .school import build_school

TO_7B = AudienceSpec(classes=(ClassTarget("7b", frozenset(["students", "guardians"])),))
RECIPIENTS_7B = ["s7b_1", "s7b_2", "s7b_3", "g7b_1", "g7b_2", "g7b_3"]


class SchoolDb:
    """A built school on one database, and a session on it inside an app context."""

    def __init__(self, app, school, session):
        self.app, self.school, self.session = app, school, session

    def user(self, handle: str) -> User:
        return self.session.get(User, self.school.ids[handle])

    def ids(self, handles) -> list[int]:
        return sorted(self.school.ids[h] for h in handles)

    def count(self, model, *where) -> int:
        """Rows in the database, read on a fresh session (what others would see)."""
        with self.app.app_context():
            factory = self.app.extensions["schoolbell.db"]
            with factory() as fresh:
                return fresh.scalar(select(func.count()).select_from(model).where(*where))

    def written(self) -> tuple[int, int, int, int]:
        """Notifications, deliveries, targets and send audit events in the database, once
        the caller's transaction has ended (as at the end of a request)."""
        self.session.rollback()
        return (
            self.count(Notification),
            self.count(Delivery),
            self.count(Target),
            self.count(AuditEvent, AuditEvent.action == "notification.sent"),
        )


def open_school(url: str, tmp_path, monkeypatch):
    """An app on `url` with build_school's people (no password hashing: faster)."""
    monkeypatch.setattr(school_module, "SIGN_IN_HANDLES", frozenset())
    app = make_test_app(url, tmp_path)
    school = build_school(app)
    with app.app_context():
        yield SchoolDb(app, school, get_session())
    app.extensions["schoolbell.db"].kw["bind"].dispose()


@pytest.fixture
def db(database_url, tmp_path, monkeypatch):
    """The school on SQLite (validation tests: the backend does not matter)."""
    yield from open_school(database_url, tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def shared_school(sqlite_template, tmp_path_factory):
    """One SQLite school for the tests where send() is refused and so writes nothing."""
    directory = tmp_path_factory.mktemp("refusals")
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from open_school(sqlite_copy(sqlite_template, directory), directory, monkeypatch)


@pytest.fixture
def shared(shared_school):
    """The shared school with a clean session."""
    yield shared_school
    shared_school.session.rollback()


@pytest.fixture
def any_db(any_database_url, tmp_path, monkeypatch):
    """The school on SQLite and on PostgreSQL."""
    yield from open_school(any_database_url, tmp_path, monkeypatch)


def send(session, actor: User, the_draft: Draft, *, idempotency_key=None, address=None):
    """prepare() then send(), as the API does."""
    prepared = notifications.prepare(session, actor, the_draft, idempotency_key=idempotency_key)
    return notifications.send(session, prepared, address=address)


def draft(**changes) -> Draft:
    return replace(Draft(title="Trip tomorrow", body="Bring **lunch**", audience=TO_7B), **changes)


def refused(error_type, db: SchoolDb, the_draft: Draft, actor: str = "admin", **kwargs):
    """send() must raise `error_type` and write nothing; return the error."""
    before = db.written()
    with pytest.raises(error_type) as caught:
        send(db.session, db.user(actor), the_draft, **kwargs)
    db.session.rollback()
    assert db.written() == before
    return caught.value


# Sending ------------------------------------------------------------------------------------


def test_send_freezes_one_pending_delivery_per_recipient(any_db):
    admin = any_db.user("admin")
    result = send(any_db.session, admin, draft(require_ack=True), address="203.0.113.9")
    assert result.created is True
    assert result.recipient_ids == any_db.ids(RECIPIENTS_7B)
    notification = result.notification
    assert notification.id is not None
    assert notification.recipient_count == 6
    assert notification.author_id == admin.id
    assert notification.require_ack is True
    assert notification.priority is Priority.NORMAL

    with any_db.app.app_context(), any_db.app.extensions["schoolbell.db"]() as fresh:
        deliveries = fresh.scalars(
            select(Delivery)
            .where(Delivery.notification_id == notification.id)
            .order_by(Delivery.user_id)
        ).all()
        assert [d.user_id for d in deliveries] == any_db.ids(RECIPIENTS_7B)
        assert {d.state for d in deliveries} == {DeliveryState.PENDING}
        assert all(
            d.delivered_at is None and d.read_at is None and d.acknowledged_at is None
            for d in deliveries
        )
        assert {d.created_at for d in deliveries} == {notification.created_at}

        [target] = fresh.scalars(
            select(Target).where(Target.notification_id == notification.id)
        ).all()
        assert target.kind is TargetKind.CLASS
        assert target.audience == ["students", "guardians"]

        [event] = fresh.scalars(
            select(AuditEvent).where(AuditEvent.action == "notification.sent")
        ).all()
        assert event.actor_id == admin.id
        assert event.subject == f"notification:{notification.id}"
        assert event.address == "203.0.113.9"
        assert event.detail == {
            "recipients": 6,
            "priority": "normal",
            "audience": ["students in 7b", "guardians in 7b"],
        }
    assert any_db.written() == (1, 6, 1, 1)


def test_send_by_a_teacher_to_people_and_their_class(any_db):
    spec = AudienceSpec(
        users=(any_db.school.emails["g7b_1"], any_db.school.emails["t7b"]),
        classes=(ClassTarget("7b", frozenset(["students"])),),
    )
    result = send(any_db.session, any_db.user("t7b"), draft(audience=spec, priority="Urgent"))
    assert result.recipient_ids == any_db.ids(["s7b_1", "s7b_2", "s7b_3", "g7b_1", "t7b"])
    assert result.notification.priority is Priority.URGENT
    kinds = sorted(t.kind.value for t in result.notification.targets)
    assert kinds == ["class", "user", "user"]
    assert any_db.written() == (1, 5, 3, 1)


def test_every_recipient_of_everyone_gets_one_row(any_db):
    result = send(
        any_db.session,
        any_db.user("admin"),
        draft(audience=AudienceSpec(everyone=True, roles=(Role.STUDENT,))),
    )
    assert len(result.recipient_ids) == len(set(result.recipient_ids)) == 15
    assert any_db.school.ids["gone"] not in result.recipient_ids
    assert any_db.count(Delivery, Delivery.notification_id == result.notification.id) == 15


def test_each_send_is_its_own_notification(any_db):
    first = send(any_db.session, any_db.user("admin"), draft())
    second = send(any_db.session, any_db.user("admin"), draft())
    assert second.notification.id > first.notification.id
    assert any_db.written() == (2, 12, 2, 2)


def test_body_html_is_sanitised_and_matches_the_preview(db):
    body = (
        "Hello <script>alert(1)</script> **all**\n\n"
        "[x](javascript:alert(1)) <img src=x onerror=alert(1)>"
    )
    the_draft = draft(body=body)
    result = send(db.session, db.user("admin"), the_draft)
    html = result.notification.body_html
    assert "<strong>all</strong>" in html
    assert "<script" not in html and "onerror" not in html and "javascript:" not in html
    assert result.notification.body == body  # the Markdown is kept as written
    assert notifications.preview(the_draft) == (result.notification.title, html)


def test_stored_values_come_back_as_sent(any_db):
    expires = (utcnow() + timedelta(days=2)).replace(microsecond=0)
    result = send(
        any_db.session,
        any_db.user("admin"),
        draft(
            title="  Sports \n day \t moved ",
            body="\n  Now on *Friday*.  \n",
            priority=" EMERGENCY ",
            link=" https://school.test/sports?x=1 ",
            expires_at=expires.astimezone(timezone(timedelta(hours=2))),
        ),
    )
    with any_db.app.app_context(), any_db.app.extensions["schoolbell.db"]() as fresh:
        stored = fresh.get(Notification, result.notification.id)
        assert stored.title == "Sports day moved"
        assert stored.body == "Now on *Friday*."
        assert stored.body_html == "<p>Now on <em>Friday</em>.</p>"
        assert stored.priority is Priority.EMERGENCY
        assert stored.link == "https://school.test/sports?x=1"
        assert stored.expires_at == expires
        assert stored.expires_at.tzinfo is not None
        assert stored.require_ack is False


def test_an_audience_without_active_recipients_writes_nothing(any_db):
    spec = AudienceSpec(users=(any_db.school.emails["gone"],))
    error = refused(ValidationFailed, any_db, draft(audience=spec))
    assert error.code == "empty_audience"


@pytest.mark.parametrize(
    ("actor", "spec", "error_type", "code"),
    [
        (
            "t7b",
            AudienceSpec(classes=(ClassTarget("7a", frozenset(["students"])),)),
            Forbidden,
            "audience_forbidden",
        ),
        ("t7b", AudienceSpec(everyone=True), Forbidden, "audience_forbidden"),
        ("s7b_1", TO_7B, Forbidden, "not_a_sender"),
        ("g7b_1", TO_7B, Forbidden, "not_a_sender"),
        ("admin", AudienceSpec(), ValidationFailed, "empty_audience"),
        (
            "admin",
            AudienceSpec(classes=(ClassTarget("9z", frozenset(["students"])),)),
            NotFound,
            "class_not_found",
        ),
        ("admin", AudienceSpec(users=("nobody@school.test",)), NotFound, "user_not_found"),
    ],
)
def test_refused_audiences_write_nothing(shared, actor, spec, error_type, code):
    assert refused(error_type, shared, draft(audience=spec), actor).code == code


def test_a_student_is_refused_before_anything_else_is_checked(shared):
    error = refused(Forbidden, shared, draft(title="", body="", priority="nope"), "s7b_1")
    assert error.code == "not_a_sender"


# Validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"title": ""}, "title_required"),
        ({"title": "   \n\t "}, "title_required"),
        ({"title": None}, "title_required"),
        ({"title": "x" * 201}, "title_too_long"),
        ({"title": "x " * 101}, "title_too_long"),
        ({"body": ""}, "body_required"),
        ({"body": " \n\n "}, "body_required"),
        ({"body": None}, "body_required"),
        ({"body": "x" * 20_001}, "body_too_long"),
        ({"priority": "high"}, "invalid_priority"),
        ({"priority": ""}, "invalid_priority"),
        ({"priority": None}, "invalid_priority"),
        ({"priority": "low"}, "invalid_priority"),
        ({"link": "javascript:alert(1)"}, "invalid_link"),
        ({"link": "JavaScript:alert(1)"}, "invalid_link"),
        ({"link": "data:text/html,hi"}, "invalid_link"),
        ({"link": "ftp://files.school.test/a"}, "invalid_link"),
        ({"link": "mailto:office@school.test"}, "invalid_link"),
        ({"link": "//school.test/a"}, "invalid_link"),
        ({"link": "school.test/a"}, "invalid_link"),
        ({"link": "https://"}, "invalid_link"),
        ({"link": "https:///path-only"}, "invalid_link"),
        ({"link": "https://school.test/" + "a" * 2030}, "invalid_link"),
        ({"expires_at": datetime(2099, 1, 1, 8, 0)}, "invalid_expires_at"),
        ({"expires_at": datetime(2020, 1, 1, 8, 0, tzinfo=UTC)}, "invalid_expires_at"),
        ({"expires_at": "past"}, "invalid_expires_at"),
        ({"expires_at": "now"}, "invalid_expires_at"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_invalid_drafts_are_refused_with_a_stable_code(shared, changes, code):
    if changes.get("expires_at") == "past":
        changes = {"expires_at": utcnow() - timedelta(seconds=1)}
    elif changes.get("expires_at") == "now":
        changes = {"expires_at": utcnow()}
    error = refused(ValidationFailed, shared, draft(**changes))
    assert error.code == code
    assert error.status == 400
    assert error.message


@pytest.mark.parametrize(
    ("title", "stored"),
    [
        ("Trip", "Trip"),
        ("  Trip   tomorrow  ", "Trip tomorrow"),
        ("Trip\ntomorrow\r\n\tat 8", "Trip tomorrow at 8"),
        ("x" * 200, "x" * 200),
        ("x" + " " * 400 + "y", "x y"),  # length counts after folding
        ("Grüße 🎒", "Grüße 🎒"),
    ],
)
def test_titles_are_one_folded_line(title, stored):
    assert notifications.clean_title(title) == stored


@pytest.mark.parametrize(
    ("value", "priority"),
    [
        ("normal", Priority.NORMAL),
        ("URGENT", Priority.URGENT),
        (" Emergency\n", Priority.EMERGENCY),
        (Priority.URGENT, Priority.URGENT),
    ],
)
def test_priorities_are_parsed_without_case(value, priority):
    assert notifications.parse_priority(value) is priority


@pytest.mark.parametrize(
    ("link", "stored"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("https://school.test", "https://school.test"),
        ("http://school.test/a?b=c#d", "http://school.test/a?b=c#d"),
        (" https://school.test/x ", "https://school.test/x"),
        ("https://school.test/" + "a" * 2028, "https://school.test/" + "a" * 2028),
    ],
)
def test_links_are_optional_http_addresses(link, stored):
    assert notifications.clean_link(link) == stored


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(hours=2), timedelta(hours=-7)])
def test_expiry_in_the_future_in_any_zone_is_accepted(offset):
    expires = datetime.now(timezone(offset)) + timedelta(minutes=5)
    assert notifications.clean_expiry(expires) == expires
    assert notifications.clean_expiry(None) is None


def test_a_body_at_the_limit_is_accepted(db):
    result = send(db.session, db.user("admin"), draft(body="x" * 20_000))
    assert len(result.notification.body) == 20_000


# Prepare: the audience resolved once, and whether to ask first ---------------------------------


@pytest.mark.parametrize(
    ("priority", "limit", "asks"),
    [
        ("normal", 6, False),  # 6 recipients: at the limit, not above it
        ("normal", 5, True),
        ("urgent", 5, True),
        ("urgent", 100, False),
        ("emergency", 100, True),
        (" EMERGENCY ", 100, True),  # what it will be sent as counts, not how it was typed
        ("emergency", None, False),  # None: nobody to ask (the API)
    ],
)
def test_prepare_asks_first_for_emergencies_and_big_audiences(shared, priority, limit, asks):
    before = shared.written()
    prepared = notifications.prepare(
        shared.session, shared.user("admin"), draft(priority=priority), confirm_above=limit
    )
    assert prepared.needs_confirmation is asks
    assert prepared.resolved.count == 6
    assert prepared.resolved.user_ids == set(shared.ids(RECIPIENTS_7B))
    assert prepared.earlier is None
    shared.session.rollback()
    assert shared.written() == before  # preparing writes nothing


def test_send_freezes_the_prepared_audience_and_names_the_author(db):
    prepared = notifications.prepare(db.session, db.user("t7b"), draft(), confirm_above=100)
    result = notifications.send(db.session, prepared)
    assert result.created is True
    assert result.recipient_ids == sorted(prepared.resolved.user_ids) == db.ids(RECIPIENTS_7B)
    assert result.author_name == "T7B"  # what the broadcast shows as the author
    assert db.written() == (1, 6, 1, 1)


# Idempotency-Key ------------------------------------------------------------------------------


def test_the_same_key_and_content_returns_the_first_send(any_db):
    admin = any_db.user("admin")
    first = send(any_db.session, admin, draft(), idempotency_key="retry-42")
    again = send(any_db.session, admin, draft(), idempotency_key="retry-42")
    assert first.created is True and again.created is False
    assert again.notification.id == first.notification.id
    assert again.recipient_ids == first.recipient_ids == any_db.ids(RECIPIENTS_7B)
    assert any_db.written() == (1, 6, 1, 1)


@pytest.mark.parametrize(
    "retry",
    [
        {"title": "  Trip \n tomorrow "},
        {"body": "\n Bring **lunch**  \n"},
    ],
    ids=["title-whitespace", "body-whitespace"],
)
def test_a_retry_that_differs_only_in_whitespace_is_the_same_send(db, retry):
    admin = db.user("admin")
    first = send(db.session, admin, draft(), idempotency_key="k")
    again = send(db.session, admin, draft(**retry), idempotency_key=" k ")
    assert (again.created, again.notification.id) == (False, first.notification.id)
    assert db.written() == (1, 6, 1, 1)


@pytest.mark.parametrize(
    "other", [{"title": "Trip cancelled"}, {"body": "Bring nothing"}], ids=["title", "body"]
)
def test_the_same_key_for_other_content_is_a_conflict(any_db, other):
    send(any_db.session, any_db.user("admin"), draft(), idempotency_key="retry-42")
    error = refused(Conflict, any_db, draft(**other), idempotency_key="retry-42")
    assert error.code == "idempotency_key_reused"
    assert error.status == 409
    assert any_db.written() == (1, 6, 1, 1)


@pytest.mark.parametrize(
    "other",
    [
        {"audience": AudienceSpec(classes=(ClassTarget("7a", frozenset(["students"])),))},
        {"priority": "emergency"},
        {"require_ack": True},
        {"link": "https://school.test/other"},
    ],
    ids=["audience", "priority", "require_ack", "link"],
)
def test_the_same_key_for_another_audience_or_options_is_a_conflict(db, other):
    """Otherwise the second announcement is silently never sent: a 7a retry answered
    with the 7b send looks like success to the integrator."""
    send(db.session, db.user("admin"), draft(), idempotency_key="retry-42")
    error = refused(Conflict, db, draft(**other), idempotency_key="retry-42")
    assert error.code == "idempotency_key_reused"


def test_the_same_key_from_another_author_is_a_separate_send(any_db):
    by_admin = send(any_db.session, any_db.user("admin"), draft(), idempotency_key="k-1")
    by_teacher = send(any_db.session, any_db.user("t7b"), draft(), idempotency_key="k-1")
    assert by_teacher.created is True
    assert by_teacher.notification.id != by_admin.notification.id
    assert by_teacher.notification.author_id == any_db.school.ids["t7b"]
    assert any_db.written() == (2, 12, 2, 2)


def test_a_concurrent_retry_that_loses_the_race_returns_the_winner(any_db, monkeypatch):
    """Both requests miss each other's key; the loser's insert hits the unique
    constraint and it answers with the winner's send instead of an error."""
    admin = any_db.user("admin")
    winner = send(any_db.session, admin, draft(), idempotency_key="race")
    real_by_key, calls = notifications._by_key, []

    def first_lookup_misses(session, author_id, key):
        calls.append(key)
        return None if len(calls) == 1 else real_by_key(session, author_id, key)

    monkeypatch.setattr(notifications, "_by_key", first_lookup_misses)
    loser = send(any_db.session, any_db.user("admin"), draft(), idempotency_key="race")
    assert len(calls) == 2
    assert (loser.created, loser.notification.id) == (False, winner.notification.id)
    assert loser.recipient_ids == winner.recipient_ids
    assert any_db.written() == (1, 6, 1, 1)


def test_a_retry_is_answered_even_if_its_audience_can_no_longer_be_reached(any_db):
    """The first send stands: a teacher's retry after leaving the class still gets it
    back (and sends nothing), while a new send to that class is refused."""
    first = send(any_db.session, any_db.user("t7b"), draft(), idempotency_key="retry-7b")
    seventh_b = classes.get_by_name(any_db.session, "7b")
    classes.remove_member(
        any_db.session, any_db.user("admin"), seventh_b.id, any_db.school.ids["t7b"]
    )
    again = send(any_db.session, any_db.user("t7b"), draft(), idempotency_key="retry-7b")
    assert (again.created, again.notification.id) == (False, first.notification.id)
    assert again.recipient_ids == first.recipient_ids
    assert again.author_name == "T7B"
    with pytest.raises(Forbidden):
        send(any_db.session, any_db.user("t7b"), draft(), idempotency_key="new-7b")
    any_db.session.rollback()
    assert any_db.written() == (1, 6, 1, 1)


@pytest.mark.parametrize("key", ["", "   ", "k" * 256])
def test_bad_idempotency_keys_are_refused(shared, key):
    error = refused(ValidationFailed, shared, draft(), idempotency_key=key)
    assert error.code == "invalid_idempotency_key"


def test_a_key_of_255_characters_is_accepted(db):
    result = send(db.session, db.user("admin"), draft(), idempotency_key="k" * 255)
    assert result.notification.idempotency_key == "k" * 255


def test_get_finds_a_sent_notification_or_says_not_found(db):
    result = send(db.session, db.user("admin"), draft())
    assert notifications.get(db.session, result.notification.id) is result.notification
    with pytest.raises(NotFound) as caught:
        notifications.get(db.session, result.notification.id + 1000)
    assert caught.value.code == "notification_not_found"
