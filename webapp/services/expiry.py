"""Expiry: at an announcement's `expires_at` every open tab drops it, and what is still
queued for it (pushes, e-mails, reminders) is cancelled. Replay already leaves expired
announcements out (services/replay.py); this job tells the tabs that are open.

The job is keyed by the expiry time it is for (`expire:<id>:<time>`), so an edit that
moves the expiry queues a new one; the old one finds the time changed and does nothing.
"""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from sqlalchemy.orm import Session

from ..db import session_scope, utcnow
from ..models import Notification
from ..realtime.events import NotificationChanged
from . import audit, jobs, notifications

EXPIRE = "expire"


def job_key(notification: Notification) -> str:
    return f"{EXPIRE}:{notification.id}:{notification.expires_at.isoformat()}"


def queue(session: Session, notification: Notification) -> None:
    """Queue the expiry job of a sent announcement that expires (not committed)."""
    if notification.expires_at is None or notification.sent_at is None:
        return
    jobs.enqueue(
        session,
        EXPIRE,
        job_key(notification),
        due_at=notification.expires_at,
        notification_id=notification.id,
        payload={"expires_at": notification.expires_at.isoformat()},
    )


notifications.AFTER_SEND.append(queue)


def expire(
    session: Session, notification_id: int, expires_at: datetime, now: datetime | None = None
) -> None:
    """Cancel what is queued for an announcement whose expiry (`expires_at`, as the job
    was queued for) has come, and commit; jobs.Cancel when there is nothing to do."""
    now = now or utcnow()
    notification = session.get(Notification, notification_id)
    if notification is None:
        raise jobs.Cancel("the announcement is gone")
    if notification.expires_at != expires_at:
        raise jobs.Cancel("its expiry was changed")
    if notification.retracted_at is not None:
        raise jobs.Cancel("the announcement was withdrawn")
    if expires_at > now:  # run early (a clock ahead elsewhere): come back at the time
        raise jobs.RetryLater("not yet expired", after_s=(expires_at - now).total_seconds())
    cancelled = jobs.cancel_for_notification(session, notification_id, "the announcement expired")
    audit.record(
        session,
        "notification.expired",
        subject=f"notification:{notification_id}",
        cancelled_jobs=max(cancelled - 1, 0),  # not counting this job itself
    )
    session.commit()


@jobs.handler(EXPIRE)
def run_expiry(app: Flask, job: jobs.JobRef) -> None:
    """The `expire` job: cancel what is queued, then tell every open tab."""
    expires_at = datetime.fromisoformat((job.payload or {})["expires_at"])
    with session_scope(app) as session:
        expire(session, job.notification_id, expires_at)
    jobs.announcer(app).publish_changed(job.notification_id, NotificationChanged.EXPIRE)
