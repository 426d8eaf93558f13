"""What a dashboard socket may watch (`/ws?watch=...`), and the fragment each topic
pushes. Fragments are the same partials the pages include, swapped by element id.
"""

from __future__ import annotations

from flask import render_template
from sqlalchemy.orm import Session

from ..errors import Forbidden, ValidationFailed
from ..models import Role, User
from ..services import presence as presence_service
from ..services import status, visibility

ONLINE = "online"
NOTIFICATION = "notification"
MAX_TOPICS = 10


def notification_topic(notification_id: int) -> str:
    return f"{NOTIFICATION}:{notification_id}"


def parse(spec: str) -> list[str]:
    """'online,notification:5' -> ['online', 'notification:5'] (validated shapes)."""
    names = [part.strip() for part in (spec or "").split(",") if part.strip()]
    if len(names) > MAX_TOPICS:
        raise ValidationFailed(f"At most {MAX_TOPICS} topics per socket.", code="bad_watch")
    for name in names:
        kind, _, arg = name.partition(":")
        if not ((kind == ONLINE and not arg) or (kind == NOTIFICATION and arg.isdigit())):
            raise ValidationFailed(f"Unknown topic {name!r}.", code="bad_watch")
    return names


def authorize(session: Session, user: User, name: str) -> str:
    """The topic this user gets for `name` (teachers get their own 'online' view), or
    Forbidden / NotFound."""
    if not user.role.is_staff:
        raise Forbidden("Only staff can watch live status.", code="watch_forbidden")
    kind, _, arg = name.partition(":")
    if kind == ONLINE:
        return ONLINE if user.role is Role.ADMIN else f"{ONLINE}:{user.id}"
    visibility.viewable(session, user, int(arg))
    return notification_topic(int(arg))


def render(session: Session, topic: str, hub) -> str | None:
    """The current HTML fragment for a topic."""
    kind, _, arg = topic.partition(":")
    if kind == NOTIFICATION:
        return render_delivery_status(session, int(arg))
    if kind == ONLINE:
        return render_online(session, hub.presence(), int(arg) if arg else None)
    return None


def render_delivery_status(session: Session, notification_id: int) -> str:
    """An announcement's status component, exactly as its page includes it."""
    from ..services import notifications

    notification = notifications.get(session, notification_id)
    return render_template(
        "dashboard/_delivery_status.html",
        notification=notification,
        report=status.status_report(session, notification),
    )


def render_online(
    session: Session, presence: dict[int, list[float]], teacher_id: int | None
) -> str:
    """Who is online: the whole school, or for a teacher within their classes."""
    viewer = session.get(User, teacher_id) if teacher_id is not None else None
    return render_template(
        "dashboard/_online.html", online=presence_service.summary(session, viewer, presence)
    )
