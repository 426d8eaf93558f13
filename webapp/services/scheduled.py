"""Scheduled sends: an announcement stored with `send_at` goes out at that time, once.

At compose time only the announcement and its targets are stored, with one `send` job
due at `send_at` (services/jobs.py). When the job runs, the audience is resolved again,
with the author's rights as they are then (a class's members on the day, not on the day
it was written), and the deliveries are written exactly as for an immediate send.

Exactly once, whatever runs it: the send marks `sent_at` with a conditional UPDATE
(`WHERE sent_at IS NULL AND retracted_at IS NULL`) in the transaction that writes the
deliveries, so a second runner (another process, or the same job again after a lost
lease) finds nothing to send; a cancelled one is never sent. A send that fell due while
no server ran goes out when one starts (its jobs are overdue), and is marked late.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from .. import errors
from ..db import session_scope, utcnow
from ..errors import DomainError
from ..models import Notification
from . import audience, audit, jobs, notifications, reach

log = logging.getLogger(__name__)


def is_late(notification: Notification, late_after_s: float) -> bool:
    """Whether a scheduled announcement went out more than `late_after_s` after its
    time (config SCHEDULED_LATE_AFTER_S)."""
    if notification.send_at is None or notification.sent_at is None:
        return False
    return notification.sent_at - notification.send_at > timedelta(seconds=late_after_s)


def send_due(
    session: Session,
    notification_id: int,
    delays: reach.Delays,
    now: datetime | None = None,
    late_after_s: float = 60,
) -> notifications.SendResult:
    """Send a scheduled announcement now and commit; raise jobs.Cancel when it was
    cancelled or already sent, jobs.GiveUp (with the reason kept on it) when its
    author can no longer reach its audience."""
    now = now or utcnow()
    notification = session.get(Notification, notification_id)
    if notification is None:
        raise jobs.Cancel("the announcement is gone")
    if not notification.is_scheduled:
        raise jobs.Cancel("cancelled" if notification.retracted_at else "already sent")
    author = notification.author
    try:
        if author is None or not author.active:
            raise errors.AUTHOR_GONE.error()
        resolved = audience.resolve(
            session, author, audience.spec_of(session, notification.targets)
        )
        if not resolved.user_ids:
            raise errors.NO_ACTIVE_RECIPIENTS.error()
    except DomainError as exc:
        session.rollback()
        _failed(session, notification_id, exc.message)
        raise jobs.GiveUp(exc.message) from None
    claimed = session.execute(
        update(Notification)
        .where(
            Notification.id == notification_id,
            Notification.sent_at.is_(None),
            Notification.retracted_at.is_(None),
        )
        .values(sent_at=now, recipient_count=resolved.count, send_error=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:  # another runner sent it, or it was cancelled, a moment ago
        session.rollback()
        raise jobs.Cancel("already sent or cancelled")
    set_committed_value(notification, "sent_at", now)
    set_committed_value(notification, "recipient_count", resolved.count)
    recipient_ids = notifications.deliver(session, notification, resolved.user_ids, delays)
    late_s = int((now - notification.send_at).total_seconds())
    audit.record(
        session,
        "notification.sent",
        actor=notification.author,
        subject=f"notification:{notification.id}",
        recipients=resolved.count,
        priority=notification.priority.value,
        audience=[label for label, _ in resolved.breakdown],
        scheduled_for=notification.send_at.isoformat(),
        **({"late_s": late_s} if is_late(notification, late_after_s) else {}),
    )
    session.commit()
    return notifications.SendResult(
        notification, recipient_ids, created=True, author_name=notification.author.name
    )


def _failed(session: Session, notification_id: int, reason: str) -> None:
    """Keep why a scheduled send could not go, for its status page; commit."""
    notification = session.get(Notification, notification_id)
    if notification is None:
        return
    notification.send_error = reason[:500]
    audit.record(
        session,
        "notification.send_failed",
        actor=notification.author,
        subject=f"notification:{notification_id}",
        reason=reason,
    )
    session.commit()


@jobs.handler(notifications.SCHEDULED_SEND)
def run_scheduled_send(app: Flask, job: jobs.JobRef) -> None:
    """The `send` job: send the announcement, then hand it to every open tab."""
    with session_scope(app) as session:
        result = send_due(
            session,
            job.notification_id,
            reach.Delays.from_config(app.config),
            late_after_s=app.config["SCHEDULED_LATE_AFTER_S"],
        )
        log.info(
            "scheduled announcement %d sent to %d people",
            result.notification.id,
            len(result.recipient_ids),
        )
        jobs.announcer(app).publish_sent(result)


def reschedule(session: Session, notification: Notification) -> None:
    """Move a scheduled announcement's send job to its (new) send_at; not committed."""
    jobs.move(session, f"{notifications.SCHEDULED_SEND}:{notification.id}", notification.send_at)
