"""Replay: what a (re)connecting socket must get from the database, so nothing sent
while a tab was closed or reconnecting is lost; and what a process's open sockets must
get of an announcement another process committed (its message and recipients), or of
everything it may have missed while its broker link was down (catch-up)."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Row, and_, bindparam, or_, select
from sqlalchemy.orm import Session

from ..db import MAX_ID, utcnow
from ..models import Delivery, DeliveryState, Notification, User

REPLAY_LIMIT = 500


_notifications, _deliveries, _authors = (
    Notification.__table__,
    Delivery.__table__,
    User.__table__.alias("author"),
)


def _messages():
    """The fields of a notification message, with its author's name."""
    notifications = _notifications
    return select(
        notifications.c.id,
        notifications.c.revision,
        notifications.c.title,
        notifications.c.body_html,
        notifications.c.priority,
        notifications.c.require_ack,
        notifications.c.confirm_by,
        notifications.c.drill,
        notifications.c.created_at,
        notifications.c.sent_at,
        notifications.c.edited_at,
        notifications.c.expires_at,
        notifications.c.link,
        _authors.c.name.label("author"),
    ).outerjoin(_authors, _authors.c.id == notifications.c.author_id)


def _live(notifications):
    """Sent, and neither withdrawn, expired (at :now) nor over (all clear)."""
    return and_(
        notifications.c.sent_at.is_not(None),
        notifications.c.retracted_at.is_(None),
        notifications.c.all_clear_at.is_(None),
        or_(notifications.c.expires_at.is_(None), notifications.c.expires_at > bindparam("now")),
    )


def _still_wanted(notifications, deliveries, last_id):
    """A delivery its recipient has not seen, or not confirmed yet where asked to, or
    (with `last_id`) one newer than what the client has."""
    return or_(
        deliveries.c.state == DeliveryState.PENDING,
        and_(
            notifications.c.require_ack.is_(True),
            deliveries.c.state != DeliveryState.ACKNOWLEDGED,
        ),
        notifications.c.id > last_id,
    )


def _replay_statement():
    """Built once: every (re)connecting socket runs it, and building a select with an
    aliased join (and its cache key) cost more than running it."""
    notifications, deliveries = _notifications, _deliveries
    return (
        _messages()
        .join(deliveries, deliveries.c.notification_id == notifications.c.id)
        .where(
            deliveries.c.user_id == bindparam("user_id"),
            _live(notifications),
            _still_wanted(notifications, deliveries, bindparam("last_id")),
        )
        .order_by(notifications.c.id)
        .limit(bindparam("limit"))
    )


_REPLAY = _replay_statement()


def replay_for(
    session: Session, user_id: int, last_id: int | None, now: datetime | None = None
) -> list[tuple[Row, str | None]]:
    """What a (re)connecting client must get, oldest first, with author names: anything
    still pending, anything newer than `last_id`, and anything awaiting confirmation;
    never expired or retracted ones. Rows carry a notification's message fields."""
    rows = session.connection().execute(
        _REPLAY,
        {
            "user_id": user_id,
            # No last id: nothing counts as newer (no id exceeds MAX_ID).
            "last_id": MAX_ID if last_id is None else last_id,
            "now": now or utcnow(),
            "limit": REPLAY_LIMIT,
        },
    )
    return [(row, row.author) for row in rows]


_PENDING = (
    _messages()
    .join(_deliveries, _deliveries.c.notification_id == _notifications.c.id)
    .where(
        _deliveries.c.user_id == bindparam("user_id"),
        _deliveries.c.state == DeliveryState.PENDING,
        _live(_notifications),
    )
    .order_by(_notifications.c.id)
    .limit(REPLAY_LIMIT)
)


def pending_for(
    session: Session, user_id: int, now: datetime | None = None
) -> list[tuple[Row, str | None]]:
    """What this user has not received anywhere yet (pending deliveries of live
    announcements), oldest first, with author names: the replay of the old design's
    clients, which cannot say what they have nor confirm anything."""
    rows = session.connection().execute(
        _PENDING, {"user_id": user_id, "now": now or utcnow(), "limit": REPLAY_LIMIT}
    )
    return [(row, row.author) for row in rows]


# For other processes' sockets ----------------------------------------------------------
_MESSAGE = _messages().where(_notifications.c.id == bindparam("id"), _live(_notifications))
_RECIPIENTS = select(_deliveries.c.user_id).where(_deliveries.c.notification_id == bindparam("id"))
_MISSED = (
    _messages()
    .where(_notifications.c.sent_at >= bindparam("since"), _live(_notifications))
    .order_by(_notifications.c.id)
    .limit(REPLAY_LIMIT)
)
_STILL_WANTED_BY = (
    select(_deliveries.c.user_id)
    .join(_notifications, _notifications.c.id == _deliveries.c.notification_id)
    .where(
        _deliveries.c.notification_id == bindparam("id"),
        _still_wanted(_notifications, _deliveries, MAX_ID),
    )
)


def message_and_recipients(
    session: Session, notification_id: int, now: datetime | None = None
) -> tuple[Row, list[int]] | None:
    """A committed announcement's message fields and every recipient's id; None once
    it is withdrawn, expired or gone."""
    connection = session.connection()
    row = connection.execute(_MESSAGE, {"id": notification_id, "now": now or utcnow()}).first()
    if row is None:
        return None
    return row, list(connection.execute(_RECIPIENTS, {"id": notification_id}).scalars())


def missed_since(
    session: Session, since: datetime, now: datetime | None = None
) -> list[tuple[Row, list[int]]]:
    """Every announcement committed since `since` (still live), oldest first, with the
    recipients who have not seen it yet (or not confirmed it where asked to)."""
    connection = session.connection()
    rows = connection.execute(_MISSED, {"since": since, "now": now or utcnow()}).all()
    return [
        (row, list(connection.execute(_STILL_WANTED_BY, {"id": row.id}).scalars())) for row in rows
    ]


# Changes to announcements already sent -------------------------------------------------
_UNCONFIRMED = select(_deliveries.c.user_id).where(
    _deliveries.c.notification_id == bindparam("id"),
    _deliveries.c.state != DeliveryState.ACKNOWLEDGED,
)
_ANY_MESSAGE = _messages().add_columns(
    _notifications.c.retracted_at, _notifications.c.all_clear_at, _notifications.c.all_clear_message
)


def recipients(session: Session, notification_id: int, *, unconfirmed: bool = False) -> list[int]:
    """An announcement's recipients (`unconfirmed`: only those who have not confirmed)."""
    statement = _UNCONFIRMED if unconfirmed else _RECIPIENTS
    return list(session.connection().execute(statement, {"id": notification_id}).scalars())


def current(session: Session, notification_id: int) -> Row | None:
    """An announcement's message fields as they are now, live or not (with
    retracted_at, all_clear_at and all_clear_message)."""
    return (
        session.connection()
        .execute(_ANY_MESSAGE.where(_notifications.c.id == notification_id))
        .first()
    )


def changed_since_shown(
    session: Session, user_id: int, shown: tuple[tuple[int, int], ...], now: datetime | None = None
) -> list[tuple[str, Row]]:
    """Of the alerts a resuming tab still shows ((id, revision) pairs), those that changed
    while it was away, each with what to tell it: "retract", "expire", "all_clear" or
    "update" (a newer revision). Only this user's own announcements are looked at, and
    ids no announcement has any more (deleted by retention: "expire", as a `Gone`)."""
    if not shown:
        return []
    now = now or utcnow()
    revisions = dict(shown)
    rows = session.connection().execute(
        _ANY_MESSAGE.join(_deliveries, _deliveries.c.notification_id == _notifications.c.id)
        .where(_deliveries.c.user_id == user_id, _notifications.c.id.in_(list(revisions)))
        .order_by(_notifications.c.id)
    )
    changes = []
    for row in rows:
        if row.retracted_at is not None:
            changes.append(("retract", row))
        elif row.all_clear_at is not None:
            changes.append(("all_clear", row))
        elif row.expires_at is not None and row.expires_at <= now:
            changes.append(("expire", row))
        elif row.revision > revisions[row.id]:
            changes.append(("update", row))
    changes.extend(
        ("expire", Gone(notification_id)) for notification_id in _gone(session, revisions)
    )
    return changes


class Gone(NamedTuple):
    """An announcement that no longer exists (deleted by retention): only its id."""

    id: int


def _gone(session: Session, revisions: dict[int, int]) -> list[int]:
    """Of these ids, those no announcement has any more: a tab still showing one was
    away when retention deleted it, and drops it now."""
    existing = set(
        session.connection()
        .execute(select(_notifications.c.id).where(_notifications.c.id.in_(list(revisions))))
        .scalars()
    )
    return sorted(set(revisions) - existing)


def changed_since(
    session: Session, since: datetime, now: datetime | None = None
) -> list[tuple[str, Row, list[int]]]:
    """Announcements edited, withdrawn, ended or expired since `since` (a catch-up after
    the broker link was down), each with what to tell its recipients' open tabs
    ("update", "retract", "all_clear", "expire") and the recipients."""
    now = now or utcnow()
    n = _notifications
    rows = (
        session.connection()
        .execute(
            _ANY_MESSAGE.where(
                n.c.sent_at.is_not(None),
                or_(
                    n.c.edited_at >= since,
                    n.c.retracted_at >= since,
                    n.c.all_clear_at >= since,
                    and_(n.c.expires_at >= since, n.c.expires_at <= now),
                ),
            )
            .order_by(n.c.id)
            .limit(REPLAY_LIMIT)
        )
        .all()
    )
    changes = []
    for row in rows:
        if row.retracted_at is not None:
            change = "retract"
        elif row.all_clear_at is not None:
            change = "all_clear"
        elif row.expires_at is not None and row.expires_at <= now:
            change = "expire"
        else:
            change = "update"
        changes.append((change, row, recipients(session, row.id)))
    return changes
