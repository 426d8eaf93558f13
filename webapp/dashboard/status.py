"""An announcement's status page: what was sent, live delivery progress, and who got it.

The page includes two components, each also returned alone by its endpoint:
`_delivery_status.html` (also pushed over /ws to the page's `notification:<id>` socket;
the endpoint and the push share one renderer, components.render_delivery_status) and
`_recipients.html` (re-fetched by the page's filters, its pagination and after each live
push).
"""

from __future__ import annotations

from flask import current_app, render_template, request
from flask_login import current_user

from ..db import get_session, utcnow
from ..realtime import topics
from ..services import (
    emergencies,
    emergency_templates,
    notifications,
    reminders,
    scheduled,
    status,
    visibility,
)
from . import bp, components


def _recipients_filters() -> dict:
    """The recipients table's filters from the query string (validated by the service)."""
    return {
        "state": request.args.get("state", ""),
        "query": request.args.get("q", ""),
        "page": max(request.args.get("page", 1, type=int), 1),
    }


@bp.get("/notifications/<id:notification_id>")
def notification_status(notification_id: int):
    """The announcement, its live delivery status and the filterable recipients table."""
    session = get_session()
    notification = visibility.viewable(session, current_user, notification_id)
    return render_template(
        "dashboard/status.html",
        topic=topics.notification_topic(notification.id),
        stage=notifications.stage(notification),
        late=scheduled.is_late(notification, current_app.config["SCHEDULED_LATE_AFTER_S"]),
        can_manage=visibility.may_manage(current_user, notification),
        revisions=notification.revisions,
        recipients=status.recipients_page(session, notification, **_recipients_filters()),
        **components.delivery_status_context(session, notification),
        roll_call=components.roll_call_context(session, notification)["roll_call"],
        **_all_clear_context(session, notification),
        **_deadline_context(session, notification),
    )


def _deadline_context(session, notification) -> dict:
    """For an announcement that asks for confirmation: its deadline and reminders, who
    has not confirmed once the deadline passed, and whether "remind now" is offered."""
    if not notification.require_ack or notification.sent_at is None:
        return {"deadline": None}
    waiting = reminders.unconfirmed_count(session, notification.id)
    passed = notification.confirm_by is not None and notification.confirm_by <= utcnow()
    stage = notifications.stage(notification)
    return {
        "deadline": {
            "confirm_by": notification.confirm_by,
            "passed": passed,
            "reminders": reminders.times_of(notification),
            "waiting": waiting,
            "missing": reminders.unconfirmed(session, notification.id, limit=50) if passed else [],
            "can_remind": waiting > 0
            and stage is notifications.Stage.SENT
            and visibility.may_manage(current_user, notification),
        }
    }


def _all_clear_context(session, notification) -> dict:
    """Whether this viewer may end this emergency now, and the message it would send
    unless they write another."""
    if emergencies.refusal(notification) or not visibility.may_manage(current_user, notification):
        return {"all_clear_default": None}
    return {"all_clear_default": emergency_templates.all_clear_text(session)}


@bp.get("/notifications/<id:notification_id>/status")
def notification_delivery_status(notification_id: int):
    """The status component alone, exactly as the socket pushes it."""
    session = get_session()
    visibility.viewable(session, current_user, notification_id)
    return components.render_delivery_status(session, notification_id)


@bp.get("/notifications/<id:notification_id>/recipients")
def notification_recipients(notification_id: int):
    """The recipients table alone (filters, pages, live refresh)."""
    session = get_session()
    notification = visibility.viewable(session, current_user, notification_id)
    return render_template(
        "dashboard/_recipients.html",
        notification=notification,
        recipients=status.recipients_page(session, notification, **_recipients_filters()),
    )
