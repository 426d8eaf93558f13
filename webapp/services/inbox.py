"""A user's inbox: the announcements they received, with their own delivery of each."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from .. import errors
from ..models import Delivery, Notification, User


def inbox(
    session: Session, user_id: int, *, since: int | None = None, limit: int = 100
) -> list[tuple[Notification, Delivery, str | None]]:
    """A user's announcements, newest first (or those after `since`, oldest first);
    withdrawn ones too (shown as withdrawn, without their text)."""
    author = aliased(User)
    stmt = (
        select(Notification, Delivery, author.name)
        .join(Delivery, Delivery.notification_id == Notification.id)
        .outerjoin(author, author.id == Notification.author_id)
        .where(Delivery.user_id == user_id)
    )
    if since is not None:
        stmt = stmt.where(Notification.id > since).order_by(Notification.id)
    else:
        stmt = stmt.order_by(Notification.id.desc())
    return [(n, d, a) for n, d, a in session.execute(stmt.limit(limit))]


def inbox_item(
    session: Session, user_id: int, notification_id: int
) -> tuple[Notification, Delivery, str | None]:
    """One announcement of a user's inbox, or NotFound."""
    author = aliased(User)
    row = session.execute(
        select(Notification, Delivery, author.name)
        .join(Delivery, Delivery.notification_id == Notification.id)
        .outerjoin(author, author.id == Notification.author_id)
        .where(Delivery.user_id == user_id, Notification.id == notification_id)
    ).first()
    if row is None:
        raise errors.NOTIFICATION_NOT_FOUND.error(id=notification_id)
    return row[0], row[1], row[2]
