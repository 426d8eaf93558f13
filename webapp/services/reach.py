"""Background reach: who gets a Web Push or an e-mail for an announcement, and when.

Open tabs come first. At send, in the send's own transaction, two fan-out jobs are
queued: pushes after PUSH_AFTER_S, e-mails after EMAIL_AFTER_S (both at once for an
emergency). A fan-out queues one job per (delivery, subscription) or per delivery,
in one INSERT ... SELECT, for exactly the recipients it is for then:

- push: recipients no tab has reported (still `pending`) who want pushes, on every
  device they subscribed; for an emergency every recipient, whatever they chose;
- e-mail: recipients whom neither a tab nor a device has reached (still `pending`, and
  no push service took a push for them) who want e-mails; for an emergency everyone
  who has not read it yet, whatever they chose.

Each push and e-mail job checks again when it runs (`push_still_needed`,
`email_still_needed`): a receipt that arrived meanwhile cancels it. Two small jobs at
send, not 10,000, keep the send (and its 201) as fast as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import Flask
from sqlalchemy import String, cast, literal, select
from sqlalchemy.orm import Session

from ..config import Defaults
from ..db import session_scope, utcnow
from ..models import (
    Delivery,
    DeliveryState,
    Job,
    JobState,
    Notification,
    Priority,
    PushSubscription,
    User,
)
from . import jobs

PUSH_FANOUT = "reach-push"
EMAIL_FANOUT = "reach-email"
PUSH = "push"  # one push to one subscription: services/push.py
# A push about an announcement a device already shows (same tag, so it replaces it):
PUSH_UPDATE = "push-update"  # edited: the new text
PUSH_RETRACT = "push-retract"  # withdrawn
PUSH_ALL_CLEAR = "push-all-clear"  # an emergency is over
PUSH_REMIND = "push-remind"  # please confirm (to every device of those who have not)
CHANGE_PUSHES = (PUSH_UPDATE, PUSH_RETRACT, PUSH_ALL_CLEAR, PUSH_REMIND)
EMAIL = "email"  # one e-mail to one recipient: services/mail.py
_JOB_COLUMNS = [
    "kind",
    "key",
    "state",
    "due_at",
    "attempts",
    "notification_id",
    "delivery_id",
    "subscription_id",
    "created_at",
]


@dataclass(frozen=True)
class Delays:
    """How long open tabs get before a push, and before an e-mail."""

    push_after_s: int = Defaults.PUSH_AFTER_S
    email_after_s: int = Defaults.EMAIL_AFTER_S

    @classmethod
    def from_config(cls, config) -> Delays:
        return cls(config["PUSH_AFTER_S"], config["EMAIL_AFTER_S"])


def schedule(session: Session, notification: Notification, delays: Delays) -> None:
    """Queue the push and e-mail fan-outs of a new announcement (not committed here:
    they commit with the send, so one exists exactly when the announcement does)."""
    sent = notification.sent_at or notification.created_at
    at_once = notification.priority is Priority.EMERGENCY
    for kind, delay_s in ((PUSH_FANOUT, delays.push_after_s), (EMAIL_FANOUT, delays.email_after_s)):
        jobs.enqueue(
            session,
            kind,
            f"{kind}:{notification.id}",
            due_at=sent if at_once else sent + timedelta(seconds=delay_s),
            notification_id=notification.id,
        )


def _live_notification(session: Session, notification_id: int | None) -> Notification:
    """The job's announcement, or Cancel when nothing more should go out for it."""
    notification = session.get(Notification, notification_id) if notification_id else None
    if notification is None:
        raise jobs.Cancel("the announcement is gone")
    reason = check_live(notification)
    if reason is not None:
        raise jobs.Cancel(reason)
    return notification


def queue_jobs(session: Session, rows) -> int:
    """INSERT the jobs `rows` (a SELECT of _JOB_COLUMNS: kind, key, state, due_at,
    attempts, notification_id, delivery_id, subscription_id, created_at) selects, those
    not queued before; return how many."""
    result = session.execute(
        jobs.insert_ignoring_duplicates(session).from_select(_JOB_COLUMNS, rows)
    )
    return result.rowcount or 0


def _push_jobs(kind: str, suffix: str, now):
    """SELECT the _JOB_COLUMNS of one `kind` job per (delivery, subscription), keyed
    `<kind>:<delivery>:<subscription><suffix>`; the caller joins and filters."""
    d, s = Delivery, PushSubscription
    return select(
        literal(kind),
        literal(f"{kind}:")
        + cast(d.id, String)
        + literal(":")
        + cast(s.id, String)
        + literal(suffix),
        literal(JobState.QUEUED, Job.__table__.c.state.type),
        literal(now, Job.__table__.c.due_at.type),
        literal(0),
        d.notification_id,
        d.id,
        s.id,
        literal(now, Job.__table__.c.created_at.type),
    )


@jobs.handler(PUSH_FANOUT)
def fan_out_pushes(app: Flask, job: jobs.JobRef) -> None:
    """Queue one push per device of each recipient still to reach."""
    now = utcnow()
    with session_scope(app) as session:
        notification = _live_notification(session, job.notification_id)
        d, s = Delivery, PushSubscription
        rows = (
            _push_jobs(PUSH, "", now)
            .join(s, s.user_id == d.user_id)
            .join(User, User.id == d.user_id)
            .where(
                d.notification_id == notification.id,
                # Redundant with the join, on purpose: SQLite then probes the deliveries
                # of the people who have a device (0.1 ms) instead of walking all of
                # the announcement's (4 ms for 10,000, on the event loop).
                d.user_id.in_(select(s.user_id)),
                User.active.is_(True),
            )
        )
        if notification.priority is not Priority.EMERGENCY:
            rows = rows.where(d.state == DeliveryState.PENDING, User.push_enabled.is_(True))
        queue_jobs(session, rows)
        session.commit()


@jobs.handler(EMAIL_FANOUT)
def fan_out_emails(app: Flask, job: jobs.JobRef) -> None:
    """Queue one e-mail per recipient no tab or device has reached."""
    from . import mail

    if not mail.configured(app.config):
        raise jobs.Cancel("no SMTP server is configured")
    now = utcnow()
    with session_scope(app) as session:
        notification = _live_notification(session, job.notification_id)
        d = Delivery
        rows = (
            select(
                literal(EMAIL),
                literal(f"{EMAIL}:") + cast(d.id, String),
                literal(JobState.QUEUED, Job.__table__.c.state.type),
                literal(now, Job.__table__.c.due_at.type),
                literal(0),
                d.notification_id,
                d.id,
                literal(None, Job.__table__.c.subscription_id.type),
                literal(now, Job.__table__.c.created_at.type),
            )
            .join(User, User.id == d.user_id)
            .where(d.notification_id == notification.id, User.active.is_(True), d.read_at.is_(None))
        )
        if notification.priority is not Priority.EMERGENCY:
            rows = rows.where(
                d.state == DeliveryState.PENDING,
                d.pushed_at.is_(None),
                User.email_enabled.is_(True),
            )
        queue_jobs(session, rows)
        session.commit()


def queue_change_pushes(session: Session, notification: Notification, kind: str, tag: str) -> int:
    """Queue a push of `kind` (CHANGE_PUSHES) in the caller's transaction (not committed):
    for a reminder, to every device of each recipient who has not confirmed and wants
    pushes (an emergency: whatever they chose); otherwise to the devices of those a push
    already reached, so what their devices show is replaced. `tag` tells this change
    from earlier ones of the same kind (a revision, a reminder's time). Returns how many."""
    now = utcnow()
    d, s = Delivery, PushSubscription
    rows = (
        _push_jobs(kind, f":{tag}", now)
        .join(s, s.user_id == d.user_id)
        .join(User, User.id == d.user_id)
        .where(d.notification_id == notification.id, User.active.is_(True))
    )
    if kind == PUSH_REMIND:
        rows = rows.where(d.state != DeliveryState.ACKNOWLEDGED)
        if notification.priority is not Priority.EMERGENCY:
            rows = rows.where(User.push_enabled.is_(True))
    else:
        rows = rows.where(d.pushed_at.is_not(None))
    return queue_jobs(session, rows)


def push_still_needed(notification: Notification, delivery: Delivery, user: User) -> str | None:
    """Why a queued push is no longer needed (None: send it)."""
    if not user.active:
        return "the recipient was deactivated"
    if notification.priority is Priority.EMERGENCY:
        return None
    if delivery.state is not DeliveryState.PENDING:
        return f"already {delivery.state.value} ({delivery.channel or 'tab'})"
    if not user.push_enabled:
        return "the recipient turned pushes off"
    return None


def email_still_needed(notification: Notification, delivery: Delivery, user: User) -> str | None:
    """Why a queued e-mail is no longer needed (None: send it)."""
    if not user.active:
        return "the recipient was deactivated"
    if delivery.read_at is not None:
        return "already read"
    if notification.priority is Priority.EMERGENCY:
        return None
    if delivery.state is not DeliveryState.PENDING:
        return f"already {delivery.state.value} ({delivery.channel or 'tab'})"
    if delivery.pushed_at is not None:
        return "a device was reached by push"
    if not user.email_enabled:
        return "the recipient turned e-mails off"
    return None


def check_live(notification: Notification) -> str | None:
    """Why nothing more should go out for an announcement (None: it is live)."""
    if notification.retracted_at is not None:
        return "the announcement was withdrawn"
    if notification.expires_at is not None and notification.expires_at <= utcnow():
        return "the announcement has expired"
    return None
