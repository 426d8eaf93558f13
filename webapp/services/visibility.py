"""Who may see an announcement's status, decided here once: admins see everything; the
author sees their own; teachers also see what targeted a class they teach; nobody else
sees anything. The rule is one SQL clause, `visible_to`: the history list filters with
it and `viewable` checks one id with it, so the two cannot disagree."""

from __future__ import annotations

from sqlalchemy import or_, select, true
from sqlalchemy.orm import Session

from .. import errors
from ..models import MemberRole, Membership, Notification, Role, Target, TargetKind, User


def taught_by(teacher_id: int):
    """audience.taught_class_ids as a subquery, so visibility stays one query."""
    return select(Membership.class_id).where(
        Membership.user_id == teacher_id, Membership.role == MemberRole.TEACHER
    )


def targets_class(class_ids):
    """The notification has a class target among `class_ids` (a value list or subquery)."""
    return (
        select(Target.id)
        .where(
            Target.notification_id == Notification.id,
            Target.kind == TargetKind.CLASS,
            Target.class_id.in_(class_ids),
        )
        .exists()
    )


def visible_to(viewer: User):
    """The rule as a WHERE clause on notifications: admins see everything; others what
    they wrote, and teachers also what targeted a class they teach."""
    if viewer.role is Role.ADMIN:
        return true()
    mine = Notification.author_id == viewer.id
    if viewer.role is not Role.TEACHER:
        return mine
    return or_(mine, targets_class(taught_by(viewer.id)))


def viewable(session: Session, actor: User, notification_id: int) -> Notification:
    """The notification if `actor` may see its status; 404 otherwise, so guessing ids
    does not even confirm that an announcement exists."""
    notification = session.scalar(
        select(Notification).where(Notification.id == notification_id, visible_to(actor))
    )
    if notification is None:
        raise errors.NOTIFICATION_NOT_FOUND.error(id=notification_id)
    return notification


def manageable(session: Session, actor: User, notification_id: int) -> Notification:
    """The notification if `actor` may change it (edit, withdraw, remind, all clear): its
    author or an administrator. Others who may see it get 403; those who may not, 404."""
    notification = viewable(session, actor, notification_id)
    if not may_manage(actor, notification):
        raise errors.NOT_YOUR_NOTIFICATION.error()
    return notification


def may_manage(actor: User, notification: Notification) -> bool:
    """The rule of `manageable` for one loaded announcement (pages use it to decide
    whether to offer a change at all): its author or an administrator."""
    return actor.role is Role.ADMIN or notification.author_id == actor.id
