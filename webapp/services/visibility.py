"""Who may see an announcement's status: admins everything; the author their own;
teachers also what targeted a class they teach; nobody else anything."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import NotFound
from ..models import Notification, Role, Target, TargetKind, User
from . import audience


def can_view_status(session: Session, actor: User, notification: Notification) -> bool:
    """The author, admins, and teachers of a targeted class see an announcement's status."""
    if actor.role is Role.ADMIN or notification.author_id == actor.id:
        return True
    if actor.role is not Role.TEACHER:
        return False
    class_ids = {
        t.class_id
        for t in session.scalars(
            select(Target).where(
                Target.notification_id == notification.id, Target.kind == TargetKind.CLASS
            )
        )
    }
    return bool(class_ids & audience.taught_class_ids(session, actor.id))


def viewable(session: Session, actor: User, notification_id: int) -> Notification:
    """The notification if `actor` may see its status; 404 otherwise, so guessing ids
    does not even confirm that an announcement exists."""
    notification = session.get(Notification, notification_id)
    if notification is None or not can_view_status(session, actor, notification):
        raise NotFound(f"No announcement with id {notification_id}.", code="notification_not_found")
    return notification
