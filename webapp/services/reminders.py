"""Confirmation deadlines and reminders.

An announcement that asks for confirmation may have a deadline (`confirm_by`) and
reminder times (`remind_at`). When it is sent, one `remind` job is queued per reminder
time and one `deadline` job at the deadline; an edit of those times queues them anew
(`reschedule`). The sender can also remind now (`remind_now`).

A reminder goes only to recipients who have not confirmed, through each of their
channels: their open tabs show the alert again (`notification` with `reminder: true`),
their devices get a push ("Reminder: ..."), and they get an e-mail (their opt-outs
respected, except for emergencies; non-urgent ones wait for the end of quiet hours).
At the deadline its sender gets an e-mail listing who did not confirm, with a link to
the status page and its CSV.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import String, cast, func, literal, select, update
from sqlalchemy.orm import Session

from .. import errors, i18n
from ..db import session_scope, utcnow
from ..models import (
    Delivery,
    DeliveryState,
    Job,
    JobState,
    Notification,
    Priority,
    User,
)
from ..realtime.events import NotificationChanged
from . import audit, jobs, mail, notifications, reach, visibility

log = logging.getLogger(__name__)
REMIND = "remind"
DEADLINE = "deadline"
DEADLINE_LIST_LIMIT = 200  # names in the sender's e-mail (the CSV has everyone)


def times_of(notification: Notification) -> list[datetime]:
    """The announcement's reminder times, as datetimes."""
    return [datetime.fromisoformat(t) for t in notification.remind_at or ()]


def _wanted(notification: Notification, now: datetime) -> dict[str, tuple[str, datetime, dict]]:
    """The remind and deadline jobs a sent announcement should have queued now: key ->
    (kind, due time, payload)."""
    if notification.sent_at is None or not notification.require_ack:
        return {}
    wanted = {
        f"{REMIND}:{notification.id}:{at.isoformat()}": (REMIND, at, {})
        for at in times_of(notification)
        if at > now
    }
    confirm_by = notification.confirm_by
    if confirm_by is not None and confirm_by > now:
        key = f"{DEADLINE}:{notification.id}:{confirm_by.isoformat()}"
        wanted[key] = (DEADLINE, confirm_by, {"confirm_by": confirm_by.isoformat()})
    return wanted


def queue(session: Session, notification: Notification, now: datetime | None = None) -> None:
    """Queue the reminders and the deadline of a sent announcement that are still ahead
    (not committed)."""
    for key, (kind, due_at, payload) in _wanted(notification, now or utcnow()).items():
        jobs.enqueue(
            session,
            kind,
            key,
            due_at=due_at,
            notification_id=notification.id,
            payload=payload or None,
        )


def reschedule(session: Session, notification: Notification, changed: list[str]) -> None:
    """After an edit of its deadline or reminder times: cancel the queued jobs of times
    no longer wanted, queue the new ones (one cancelled before and wanted again is
    queued again); not committed. "Remind now" jobs are left alone."""
    if not {"confirm_by", "remind_at", "require_ack"} & set(changed):
        return
    now = utcnow()
    wanted = _wanted(notification, now)
    existing = dict(
        session.execute(
            select(Job.key, Job.state).where(
                Job.notification_id == notification.id,
                Job.kind.in_([REMIND, DEADLINE]),
                Job.key.not_like(f"{REMIND}:{notification.id}:now:%"),
            )
        ).all()
    )
    dropped = [k for k, state in existing.items() if state is JobState.QUEUED and k not in wanted]
    again = [k for k in wanted if existing.get(k) is JobState.CANCELLED]
    if dropped:
        session.execute(
            update(Job)
            .where(Job.key.in_(dropped), Job.state == JobState.QUEUED)
            .values(state=JobState.CANCELLED, finished_at=now, last_error="rescheduled")
            .execution_options(synchronize_session=False)
        )
    if again:
        session.execute(
            update(Job)
            .where(Job.key.in_(again))
            .values(state=JobState.QUEUED, finished_at=None, last_error=None, leased_until=None)
            .execution_options(synchronize_session=False)
        )
    queue(session, notification, now)


notifications.AFTER_SEND.append(queue)
notifications.AFTER_EDIT.append(reschedule)


def unconfirmed_count(session: Session, notification_id: int) -> int:
    return session.scalar(
        select(func.count())
        .select_from(Delivery)
        .join(User, User.id == Delivery.user_id)
        .where(
            Delivery.notification_id == notification_id,
            Delivery.state != DeliveryState.ACKNOWLEDGED,
            User.active.is_(True),
        )
    )


def remind_now(
    session: Session,
    actor: User,
    notification_id: int,
    *,
    min_interval_s: float,
    address: str | None = None,
    now: datetime | None = None,
) -> int:
    """Remind everyone who has not confirmed, now (its author or an admin); commit.
    Returns how many will be reminded. Refused when nothing asks for confirmation, it
    is not out (or no longer live), everyone confirmed, or it was just reminded."""
    now = now or utcnow()
    notification = visibility.manageable(session, actor, notification_id)
    if not notification.require_ack:
        raise errors.NOT_ASKING_CONFIRMATION.error()
    reason = reach.check_live(notification)
    if notification.sent_at is None or reason is not None or notification.all_clear_at:
        raise errors.CANNOT_REMIND.error()
    waiting = unconfirmed_count(session, notification_id)
    if not waiting:
        raise errors.EVERYONE_CONFIRMED.error()
    last = session.scalar(
        select(func.max(Delivery.reminded_at)).where(Delivery.notification_id == notification_id)
    )
    if last is not None and now - last < timedelta(seconds=min_interval_s):
        raise errors.REMINDED_RECENTLY.error(minutes=max(int(min_interval_s // 60), 1))
    jobs.enqueue(
        session,
        REMIND,
        f"{REMIND}:{notification_id}:now:{now.isoformat()}",
        due_at=now,
        notification_id=notification_id,
    )
    # Marked at once, so a second click (or another process) cannot queue another.
    _mark_reminded(session, notification_id, now)
    audit.record(
        session,
        "notification.reminded",
        actor=actor,
        subject=f"notification:{notification_id}",
        address=address,
        recipients=waiting,
    )
    session.commit()
    return waiting


def _mark_reminded(session: Session, notification_id: int, now: datetime) -> None:
    session.execute(
        update(Delivery)
        .where(
            Delivery.notification_id == notification_id,
            Delivery.state != DeliveryState.ACKNOWLEDGED,
        )
        .values(reminded_at=now)
        .execution_options(synchronize_session=False)
    )


def send_reminder(
    session: Session, notification_id: int, tag: str, now: datetime | None = None
) -> int:
    """Queue the reminder pushes and e-mails of everyone who has not confirmed, mark
    them reminded, and commit; jobs.Cancel when nothing should go. Returns how many."""
    now = now or utcnow()
    notification = session.get(Notification, notification_id)
    if notification is None:
        raise jobs.Cancel("the announcement is gone")
    reason = reach.check_live(notification)
    if reason is not None:
        raise jobs.Cancel(reason)
    if notification.all_clear_at is not None:
        raise jobs.Cancel("the emergency is over")
    if not notification.require_ack:
        raise jobs.Cancel("it no longer asks for confirmation")
    waiting = unconfirmed_count(session, notification_id)
    if not waiting:
        raise jobs.Cancel("everyone confirmed")
    _mark_reminded(session, notification_id, now)
    reach.queue_change_pushes(session, notification, reach.PUSH_REMIND, tag)
    _queue_reminder_emails(session, notification, tag, now)
    audit.record(
        session,
        "notification.reminders_sent",
        subject=f"notification:{notification_id}",
        recipients=waiting,
    )
    session.commit()
    return waiting


def _queue_reminder_emails(
    session: Session, notification: Notification, tag: str, now: datetime
) -> None:
    """One reminder e-mail per recipient who has not confirmed (and wants e-mails,
    unless it is an emergency); the job checks again before it sends."""
    d, j = Delivery, Job.__table__
    rows = (
        select(
            literal(mail.EMAIL_REMIND),
            literal(f"{mail.EMAIL_REMIND}:") + cast(d.id, String) + literal(f":{tag}"),
            literal(JobState.QUEUED, j.c.state.type),
            literal(now, j.c.due_at.type),
            literal(0),
            d.notification_id,
            d.id,
            literal(None, j.c.subscription_id.type),
            literal(now, j.c.created_at.type),
        )
        .join(User, User.id == d.user_id)
        .where(
            d.notification_id == notification.id,
            d.state != DeliveryState.ACKNOWLEDGED,
            User.active.is_(True),
        )
    )
    if notification.priority is not Priority.EMERGENCY:
        rows = rows.where(User.email_enabled.is_(True))
    reach.queue_jobs(session, rows)


@jobs.handler(REMIND)
def run_reminder(app: Flask, job: jobs.JobRef) -> None:
    """The `remind` job: pushes and e-mails queued, then every open tab reminded."""
    tag = job.key.split(":", 2)[2].replace(":", "")
    with session_scope(app) as session:  # without SMTP the e-mail jobs cancel themselves
        count = send_reminder(session, job.notification_id, tag)
    log.info("announcement %d: reminding %d people", job.notification_id, count)
    jobs.announcer(app).publish_changed(job.notification_id, NotificationChanged.REMIND)


# The deadline ------------------------------------------------------------------------


def unconfirmed(session: Session, notification_id: int, limit: int | None = None) -> list[User]:
    """Who has not confirmed, by name."""
    statement = (
        select(User)
        .join(Delivery, Delivery.user_id == User.id)
        .where(
            Delivery.notification_id == notification_id,
            Delivery.state != DeliveryState.ACKNOWLEDGED,
        )
        .order_by(User.name, User.id)
    )
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.scalars(statement))


@jobs.handler(DEADLINE)
def run_deadline(app: Flask, job: jobs.JobRef) -> None:
    """The `deadline` job: e-mail the sender who did not confirm (once, at the deadline
    the job was queued for)."""
    confirm_by = datetime.fromisoformat((job.payload or {})["confirm_by"])
    with session_scope(app) as session:
        notification = session.get(Notification, job.notification_id)
        if notification is None or notification.confirm_by != confirm_by:
            raise jobs.Cancel("the deadline was changed")
        if notification.retracted_at is not None:
            raise jobs.Cancel("the announcement was withdrawn")
        author = notification.author
        missing = unconfirmed(session, notification.id)
        audit.record(
            session,
            "notification.deadline_passed",
            subject=f"notification:{notification.id}",
            unconfirmed=len(missing),
        )
        session.commit()
        if author is None or not author.active:
            raise jobs.Cancel("its author's account is gone")
        if not mail.configured(app.config):
            raise jobs.Cancel("no SMTP server is configured")
        with app.app_context(), i18n.speaking(author.language, app.config):
            message = mail.compose_deadline_report(
                notification, author, missing[:DEADLINE_LIST_LIMIT], len(missing), app.config
            )
    try:
        mail.send_message(mail.smtp_settings(app.config), message, app.config["SMTP_TIMEOUT_S"])
    except (OSError, smtplib.SMTPException) as exc:
        raise mail.job_outcome(exc) from None
