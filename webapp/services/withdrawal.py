"""Withdrawing an announcement: a sent one disappears from every open tab at once, is
never replayed, shows as withdrawn in the inbox, and a device a push reached shows
"withdrawn" under the same tag; a scheduled one is cancelled and never goes. Everything
still queued for it (pushes, e-mails, reminders, the scheduled send) is cancelled."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from .. import errors
from ..db import utcnow
from ..models import Notification, User
from ..realtime.events import NotificationChanged
from . import audit, jobs, reach, visibility


def withdraw(
    session: Session,
    actor: User,
    notification_id: int,
    *,
    address: str | None = None,
    now: datetime | None = None,
) -> tuple[Notification, str | None]:
    """Withdraw (sent) or cancel (scheduled) an announcement, its author or an admin;
    commit. Returns it and what to tell open tabs (None for a cancelled one)."""
    now = now or utcnow()
    notification = visibility.manageable(session, actor, notification_id)
    if notification.retracted_at is not None:
        raise errors.ALREADY_WITHDRAWN.error()
    was_scheduled = notification.is_scheduled
    notification.retracted_at = now
    cancelled = jobs.cancel_for_notification(
        session, notification.id, "cancelled" if was_scheduled else "withdrawn"
    )
    if not was_scheduled:
        reach.queue_change_pushes(session, notification, reach.PUSH_RETRACT, "retract")
    audit.record(
        session,
        "notification.cancelled" if was_scheduled else "notification.withdrawn",
        actor=actor,
        subject=f"notification:{notification.id}",
        address=address,
        cancelled_jobs=cancelled,
    )
    session.commit()
    return notification, None if was_scheduled else NotificationChanged.RETRACT
