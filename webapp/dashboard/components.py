"""The dashboard's live components, one renderer each, used by the pages, their fragment
endpoints and the /ws push alike, so all three show the very same HTML:

- `_delivery_status.html` (#delivery-status-<id>), topic `notification:<id>`, and with
  it, for emergencies, `_roll_call.html` (#roll-call-<id>): answers are receipts too;
- `_online.html` (#online-panel), topic `online` (a teacher's own: `online:<their id>`).

At app set-up they are registered with realtime's topic registry, with who may watch them.
"""

from __future__ import annotations

from flask import Flask, current_app, render_template
from sqlalchemy.orm import Session

from .. import errors
from ..models import Notification, Role, User
from ..realtime import topics
from ..realtime.live import live
from ..services import mail, notifications, roll_call, status, visibility
from ..services import presence as presence_service


def delivery_status_context(session: Session, notification) -> dict:
    """What the status component needs, for its page and for its pushes alike."""
    return {
        "notification": notification,
        "report": status.status_report(session, notification),
        "email_configured": mail.configured(current_app.config),
    }


def render_delivery_status(session: Session, notification_id: int) -> str:
    """An announcement's live status components, exactly as its page includes them: the
    delivery status, and for an emergency its roll call first (the ws extension swaps
    each by its id)."""
    notification = notifications.get(session, notification_id)
    delivery = render_template(
        "dashboard/_delivery_status.html", **delivery_status_context(session, notification)
    )
    roll = render_roll_call(session, notification)
    return f"{roll}\n{delivery}" if roll else delivery


# The roll call (emergencies) ---------------------------------------------------------------
def roll_call_context(session: Session, notification) -> dict:
    """What the roll-call component needs (`roll_call` None: not an emergency)."""
    return {"notification": notification, "roll_call": roll_call.roll_call(session, notification)}


def render_roll_call(session: Session, notification) -> str:
    """The roll-call component of an emergency ("" for any other announcement)."""
    context = roll_call_context(session, notification)
    if context["roll_call"] is None:
        return ""
    return render_template("dashboard/_roll_call.html", **context)


def online_viewer(user: User) -> User | None:
    """Whose view of presence `user` gets: None (the whole school) for admins, else their own."""
    return None if user.role is Role.ADMIN else user


def online_summary(session: Session, viewer: User | None) -> presence_service.OnlineSummary:
    """Who is online, as `viewer` may see it (None: the whole school)."""
    return presence_service.summary(session, viewer, live().presence.online())


def render_online(session: Session, viewer: User | None) -> str:
    """The online panel: the whole school (viewer None), or a teacher's classes."""
    return render_template("dashboard/_online.html", online=online_summary(session, viewer))


# Watching over /ws -------------------------------------------------------------------------


def _staff_only(user: User) -> None:
    if not user.role.is_staff:
        raise errors.WATCH_FORBIDDEN.error()


def authorize_delivery_status(session: Session, user: User, notification_id: str) -> str:
    """Staff who may see the announcement watch its status (else Forbidden / NotFound)."""
    _staff_only(user)
    visibility.viewable(session, user, int(notification_id))
    return topics.notification_topic(int(notification_id))


def authorize_online(session: Session, user: User, _arg: str) -> str:
    """Admins watch the whole school's presence; a teacher their own view of it."""
    _staff_only(user)
    return topics.ONLINE if online_viewer(user) is None else f"{topics.ONLINE}:{user.id}"


def push_delivery_status(session: Session, notification_id: str) -> str | None:
    """The status components to push; nothing once the announcement is gone (deleted
    by retention while a page still watched it)."""
    if session.get(Notification, int(notification_id)) is None:
        return None
    return render_delivery_status(session, int(notification_id))


def push_online(session: Session, teacher_id: str) -> str | None:
    """The school's panel (no id), or a teacher's own; nothing once that account is gone
    (never the whole school's instead)."""
    if not teacher_id:
        return render_online(session, None)
    teacher = session.get(User, int(teacher_id))
    return render_online(session, teacher) if teacher is not None else None


def register(app: Flask) -> None:
    """Serve the dashboard's components to watching sockets; give templates the
    recipients table's `reached_by`."""
    app.jinja_env.globals["reached_by"] = status.reached_by
    topics.register(
        app,
        topics.NOTIFICATION,
        authorize=authorize_delivery_status,
        render=push_delivery_status,
    )
    topics.register(app, topics.ONLINE, authorize=authorize_online, render=push_online)
