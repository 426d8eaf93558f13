"""Editing an announcement: before it goes (a scheduled one: everything, its time and
audience included) and after (its content: title, body, priority, link, expiry, the
confirmation deadline and reminders).

Every change of content makes a new revision: the announcement's columns hold the
current one, and each revision is kept as a NotificationRevision and audited. After
sending, open tabs replace the alert in place (an `update` message with the revision),
replay brings the latest revision, and a device a push reached gets the new text under
the same tag. The sender may call the change material (`reconfirm`): then everyone's
read and confirmation are reset, and they are asked again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from .. import errors
from ..db import utcnow
from ..markup import render_markdown
from ..models import Delivery, DeliveryState, Notification, NotificationRevision, User
from ..realtime.events import NotificationChanged
from . import audience, audit, expiry, notifications, reach, scheduled, visibility

UNCHANGED: Any = object()  # a field the edit leaves as it is (None clears some)
CONTENT = ("title", "body", "priority", "require_ack", "link", "expires_at")
TIMES = ("confirm_by", "remind_at")


@dataclass
class Edit:
    """What to change; fields left UNCHANGED stay as they are."""

    title: Any = UNCHANGED
    body: Any = UNCHANGED
    priority: Any = UNCHANGED
    require_ack: Any = UNCHANGED
    link: Any = UNCHANGED  # None: no link
    expires_at: Any = UNCHANGED  # None: never
    confirm_by: Any = UNCHANGED  # None: no deadline
    remind_at: Any = UNCHANGED  # a list of times
    send_at: Any = UNCHANGED  # scheduled only; None: now
    audience: Any = UNCHANGED  # scheduled only: an AudienceSpec
    reconfirm: bool = False  # a material change: ask everyone again


@dataclass
class EditResult:
    notification: Notification
    changed: list[str] = field(default_factory=list)
    change: str | None = None  # what to tell open tabs (NotificationChanged), if anything


def _cleaned(notification: Notification, edit: Edit, now: datetime) -> dict[str, Any]:
    """The edit's fields, cleaned and checked against each other, as column values."""
    values: dict[str, Any] = {}
    if edit.title is not UNCHANGED:
        values["title"] = notifications.clean_title(edit.title)
    if edit.body is not UNCHANGED:
        values["body"] = notifications.clean_body(edit.body)
    if edit.priority is not UNCHANGED:
        values["priority"] = notifications.parse_priority(edit.priority)
    if edit.require_ack is not UNCHANGED:
        values["require_ack"] = bool(edit.require_ack)
    if edit.link is not UNCHANGED:
        values["link"] = notifications.clean_link(edit.link)
    if edit.send_at is not UNCHANGED:
        values["send_at"] = notifications.clean_send_at(edit.send_at, now) or now
    starts = values.get("send_at", notification.send_at) if notification.is_scheduled else None
    moved = "send_at" in values  # the times it keeps must still come after the new one
    if edit.expires_at is not UNCHANGED or (moved and notification.expires_at):
        expires_at = notification.expires_at if edit.expires_at is UNCHANGED else edit.expires_at
        values["expires_at"] = notifications.clean_expiry(expires_at, starts)
    confirm_by = notification.confirm_by
    if edit.confirm_by is not UNCHANGED or (moved and confirm_by):
        confirm_by = values["confirm_by"] = notifications.clean_confirm_by(
            confirm_by if edit.confirm_by is UNCHANGED else edit.confirm_by, starts
        )
        if confirm_by is not None:  # a deadline to confirm means confirming is asked
            values["require_ack"] = True
    if edit.remind_at is not UNCHANGED or "confirm_by" in values:
        reminders = (
            [datetime.fromisoformat(t) for t in notification.remind_at or ()]
            if edit.remind_at is UNCHANGED
            else list(edit.remind_at or ())
        )
        if edit.remind_at is UNCHANGED:  # keep those still before the new deadline
            reminders = [t for t in reminders if confirm_by and (starts or now) < t < confirm_by]
        times = notifications.clean_remind_at(reminders, confirm_by, starts)
        values["remind_at"] = [t.isoformat() for t in times] or None
    return values


def edit(
    session: Session,
    actor: User,
    notification_id: int,
    change: Edit,
    *,
    address: str | None = None,
    now: datetime | None = None,
) -> EditResult:
    """Apply an edit (its author or an admin), keep the new revision, audit, commit."""
    now = now or utcnow()
    notification = visibility.manageable(session, actor, notification_id)
    if notification.retracted_at is not None:
        raise errors.ALREADY_WITHDRAWN.error()
    if notification.all_clear_at is not None:
        raise errors.ALREADY_OVER.error()
    if notification.expires_at is not None and notification.expires_at <= now:
        raise errors.ALREADY_EXPIRED.error()
    is_scheduled = notification.is_scheduled
    if not is_scheduled and (change.send_at is not UNCHANGED or change.audience is not UNCHANGED):
        raise errors.NOT_SCHEDULED.error()
    values = _cleaned(notification, change, now)
    changed = [name for name, value in values.items() if getattr(notification, name) != value]
    resolved = None
    if change.audience is not UNCHANGED:
        resolved = audience.resolve(session, actor, change.audience)
        if not resolved.user_ids:
            raise errors.NO_ACTIVE_RECIPIENTS.error()
        changed.append("audience")
    if not changed and not (change.reconfirm and not is_scheduled):
        raise errors.NOTHING_TO_CHANGE.error()
    for name in changed:
        if name != "audience":
            setattr(notification, name, values[name])
    if "body" in changed:
        notification.body_html = render_markdown(notification.body)
    if resolved is not None:
        notification.targets = resolved.targets
        notification.recipient_count = resolved.count
    reconfirm = change.reconfirm and not is_scheduled
    new_content = reconfirm or any(name in CONTENT for name in changed)
    if new_content:
        _new_revision(session, notification, actor, reconfirm, now)
    result = EditResult(notification, changed)
    if is_scheduled:
        if "send_at" in changed:
            scheduled.reschedule(session, notification)
    else:
        if reconfirm:
            _ask_again(session, notification.id)
        if new_content or any(name in TIMES for name in changed):
            result.change = (
                NotificationChanged.RECONFIRM if reconfirm else NotificationChanged.UPDATE
            )
        if new_content:
            reach.queue_change_pushes(
                session, notification, reach.PUSH_UPDATE, f"r{notification.revision}"
            )
        if "expires_at" in changed:
            expiry.queue(session, notification)
        for follow_up in notifications.AFTER_EDIT:
            follow_up(session, notification, changed)
    audit.record(
        session,
        "notification.edited",
        actor=actor,
        subject=f"notification:{notification.id}",
        address=address,
        revision=notification.revision,
        changed=changed,
        reconfirm=reconfirm,
        scheduled=is_scheduled,
    )
    session.commit()
    return result


def _new_revision(
    session: Session, notification: Notification, editor: User, reconfirm: bool, now: datetime
) -> None:
    """Number the announcement's new content and keep it as a revision."""
    notification.revision += 1
    if not notification.is_scheduled:
        notification.edited_at = now  # nobody saw a scheduled one's earlier text
    notification.revisions.append(
        NotificationRevision.of(notification, editor_id=editor.id, reconfirm=reconfirm, at=now)
    )


def _ask_again(session: Session, notification_id: int) -> None:
    """A material change: everyone who read or confirmed it is asked again (their
    delivery goes back to delivered; the audit and the revisions keep what was)."""
    session.execute(
        update(Delivery)
        .where(
            Delivery.notification_id == notification_id,
            Delivery.state.in_([DeliveryState.READ, DeliveryState.ACKNOWLEDGED]),
        )
        .values(state=DeliveryState.DELIVERED, read_at=None, acknowledged_at=None)
        .execution_options(synchronize_session=False)
    )
