"""Replay: what a (re)connecting socket must get from the database, so nothing sent
while a tab was closed or reconnecting is lost."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Row, and_, bindparam, or_, select
from sqlalchemy.orm import Session

from ..db import MAX_ID, utcnow
from ..models import Delivery, DeliveryState, Notification, User

REPLAY_LIMIT = 500


def _replay_statement():
    """Built once: every (re)connecting socket runs it, and building a select with an
    aliased join (and its cache key) cost more than running it."""
    notifications, deliveries, authors = (
        Notification.__table__,
        Delivery.__table__,
        User.__table__.alias("author"),
    )
    wanted = or_(
        deliveries.c.state == DeliveryState.PENDING,
        and_(
            notifications.c.require_ack.is_(True),
            deliveries.c.state != DeliveryState.ACKNOWLEDGED,
        ),
        notifications.c.id > bindparam("last_id"),
    )
    return (
        select(
            notifications.c.id,
            notifications.c.title,
            notifications.c.body_html,
            notifications.c.priority,
            notifications.c.require_ack,
            notifications.c.created_at,
            notifications.c.expires_at,
            notifications.c.link,
            authors.c.name.label("author"),
        )
        .join(deliveries, deliveries.c.notification_id == notifications.c.id)
        .outerjoin(authors, authors.c.id == notifications.c.author_id)
        .where(
            deliveries.c.user_id == bindparam("user_id"),
            notifications.c.retracted_at.is_(None),
            or_(
                notifications.c.expires_at.is_(None), notifications.c.expires_at > bindparam("now")
            ),
            wanted,
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
