"""Ending an emergency: the all clear. Its author or an administrator says the
emergency is over, with a short message; every open tab turns the emergency's overlay
into that message (published after commit, at the edge), and every device a push
reached has its notification replaced by it.

The message is stored as plain text (at most MAX_MESSAGE_CHARS; line breaks kept):
clients show it with textContent and the push shows it as it is, so there is no markup
to sanitise. The default is the all-clear template's Markdown, reduced to its text.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from .. import errors
from ..db import utcnow
from ..errors import ErrorCode
from ..models import Notification, Priority, User
from . import audit, emergency_templates, jobs, reach, visibility

MAX_MESSAGE_CHARS = 1000
ALL_CLEAR_TAG = "all-clear"  # an emergency ends once: its change push has one tag


def refusal(notification: Notification, now: datetime | None = None) -> ErrorCode | None:
    """Why this announcement cannot be given the all clear (None: it can): it must be an
    emergency that went out and is still going on."""
    now = now or utcnow()
    if notification.priority is not Priority.EMERGENCY:
        return errors.NOT_AN_EMERGENCY
    if notification.sent_at is None:
        return errors.EMERGENCY_NOT_SENT
    if notification.retracted_at is not None:
        return errors.ALREADY_WITHDRAWN
    if notification.all_clear_at is not None:
        return errors.EMERGENCY_OVER
    if notification.expires_at is not None and notification.expires_at <= now:
        return errors.EMERGENCY_EXPIRED
    return None


def clean_message(message: str | None) -> str | None:
    """The sender's message: trimmed, line breaks normalised, None when empty."""
    lines = [" ".join(line.split()) for line in (message or "").strip().splitlines()]
    text = "\n".join(lines).strip()
    if len(text) > MAX_MESSAGE_CHARS:
        raise errors.ALL_CLEAR_TOO_LONG.error(max=MAX_MESSAGE_CHARS)
    return text or None


def all_clear(
    session: Session,
    actor: User,
    notification_id: int,
    message: str | None = None,
    *,
    address: str | None = None,
) -> Notification:
    """End an emergency: keep the message (the template's when none is given), cancel
    what is still queued for it (pushes, e-mails, reminders: it is over), queue the
    pushes that replace what devices show, audit and commit. The caller publishes
    NotificationChanged.ALL_CLEAR after this returns."""
    text = clean_message(message)
    if text is None:
        text = emergency_templates.all_clear_text(session)  # may commit: do it first
    notification = visibility.manageable(session, actor, notification_id)
    problem = refusal(notification)
    if problem is not None:
        raise problem.error()
    notification.all_clear_at = utcnow()
    notification.all_clear_message = text
    # Cancel first: the all-clear pushes queued next must not be cancelled with the rest.
    cancelled = jobs.cancel_for_notification(session, notification.id, "all clear")
    pushes = reach.queue_change_pushes(session, notification, reach.PUSH_ALL_CLEAR, ALL_CLEAR_TAG)
    audit.record(
        session,
        "notification.all_clear",
        actor=actor,
        subject=f"notification:{notification.id}",
        address=address,
        drill=bool(notification.drill),
        cancelled_jobs=cancelled,
        pushes=pushes,
    )
    session.commit()
    return notification
