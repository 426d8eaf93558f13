"""Announcements: validate a draft and resolve its audience (prepare), then freeze the
audience into deliveries and commit (send).

Publishing to live sockets is not done here: the caller does it after commit, at the
edge (`realtime.live`), so a crash between the two loses nothing (clients replay).
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, Integer, and_, cast, insert, literal, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import errors
from ..db import integer_rows, utcnow
from ..markup import render_markdown
from ..models import Delivery, DeliveryState, Notification, NotificationRevision, Priority, User
from . import audience, audit, jobs, reach

MAX_TITLE_CHARS = 200
_deliveries = Delivery.__table__
MAX_BODY_CHARS = 20_000
MAX_LINK_CHARS = 2048


@dataclass
class Draft:
    """What an author (or another system) asks to send."""

    title: str
    body: str
    priority: str = Priority.NORMAL.value
    require_ack: bool = False
    expires_at: datetime | None = None
    link: str | None = None
    audience: audience.AudienceSpec = field(default_factory=audience.AudienceSpec)
    send_at: datetime | None = None  # None: now
    confirm_by: datetime | None = None  # implies require_ack
    remind_at: tuple[datetime, ...] = ()  # reminders to confirm, before confirm_by
    drill: bool = False


@dataclass(frozen=True)
class Prepared:
    """A draft checked for sending: its cleaned content, its audience resolved once, and
    whether the sender must confirm first. A repeat (an Idempotency-Key this sender
    already used for the same request) carries the earlier announcement instead of an
    audience: sending it sends nothing new."""

    actor: User
    title: str
    body: str
    priority: Priority
    require_ack: bool
    link: str | None
    expires_at: datetime | None
    idempotency_key: str | None
    request_hash: str
    resolved: audience.Resolved | None  # None for a repeat
    earlier: Notification | None = None  # the announcement a repeat repeats
    needs_confirmation: bool = False
    send_at: datetime | None = None  # a scheduled send: its time (None: now)
    confirm_by: datetime | None = None
    remind_at: tuple[datetime, ...] = ()
    drill: bool = False


@dataclass
class SendResult:
    """What a send did, and what the broadcast after commit needs."""

    notification: Notification
    recipient_ids: list[int]
    created: bool  # False when an Idempotency-Key matched an earlier send
    author_name: str | None  # for the broadcast after commit

    @property
    def scheduled(self) -> bool:
        """Queued for its send time: nothing goes out now."""
        return self.notification.sent_at is None


def clean_title(title: str) -> str:
    """Titles are one line of plain text."""
    title = " ".join((title or "").split())
    if not title:
        raise errors.TITLE_REQUIRED.error()
    if len(title) > MAX_TITLE_CHARS:
        raise errors.TITLE_TOO_LONG.error(max=MAX_TITLE_CHARS)
    return title


def clean_body(body: str) -> str:
    body = (body or "").strip()
    if not body:
        raise errors.BODY_REQUIRED.error()
    if len(body) > MAX_BODY_CHARS:
        raise errors.BODY_TOO_LONG.error(max=MAX_BODY_CHARS, length=len(body))
    return body


def parse_priority(value: str) -> Priority:
    try:
        return Priority((value or "").strip().lower())
    except ValueError:
        raise errors.INVALID_PRIORITY.error() from None


def clean_link(link: str | None) -> str | None:
    """An optional http(s) link shown with the alert."""
    link = (link or "").strip()
    if not link:
        return None
    try:
        parts = urlsplit(link)
    except ValueError:  # e.g. "https://[::1": an unclosed IPv6 address
        raise errors.INVALID_LINK.error() from None
    if parts.scheme not in ("http", "https") or not parts.netloc or len(link) > MAX_LINK_CHARS:
        raise errors.INVALID_LINK.error()
    return link


MAX_SCHEDULE_DAYS = 366
MAX_REMINDERS = 5
# A send_at this close to now (or a little behind, by the sender's clock) means now.
SEND_NOW_WITHIN = timedelta(seconds=5)
PAST_TOLERANCE = timedelta(minutes=1)


def _aware(value: datetime | None, invalid: errors.ErrorCode) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise invalid.error()
    return value


def clean_expiry(expires_at: datetime | None, starts: datetime | None = None) -> datetime | None:
    """An optional expiry, in the future and after `starts` (a scheduled send)."""
    expires_at = _aware(expires_at, errors.INVALID_EXPIRES_AT)
    if expires_at is None:
        return None
    if expires_at <= utcnow():
        raise errors.EXPIRY_IN_PAST.error()
    if starts is not None and expires_at <= starts:
        raise errors.EXPIRY_BEFORE_SEND.error()
    return expires_at


def clean_send_at(send_at: datetime | None, now: datetime | None = None) -> datetime | None:
    """When a scheduled send goes (UTC), or None for now: a time within a few seconds of
    now (or a minute behind it, a sender's clock running late) means now."""
    send_at = _aware(send_at, errors.INVALID_SEND_AT)
    if send_at is None:
        return None
    now = now or utcnow()
    if send_at < now - PAST_TOLERANCE:
        raise errors.SEND_AT_IN_PAST.error()
    if send_at <= now + SEND_NOW_WITHIN:
        return None
    if send_at > now + timedelta(days=MAX_SCHEDULE_DAYS):
        raise errors.SEND_AT_TOO_FAR.error(days=MAX_SCHEDULE_DAYS)
    return send_at.astimezone(UTC)


def clean_confirm_by(confirm_by: datetime | None, starts: datetime | None) -> datetime | None:
    """An optional confirmation deadline, in the future and after the send."""
    confirm_by = _aware(confirm_by, errors.INVALID_CONFIRM_BY)
    if confirm_by is None:
        return None
    if confirm_by <= utcnow():
        raise errors.CONFIRM_BY_IN_PAST.error()
    if starts is not None and confirm_by <= starts:
        raise errors.CONFIRM_BY_BEFORE_SEND.error()
    return confirm_by.astimezone(UTC)


def clean_remind_at(
    remind_at: tuple[datetime, ...] | list[datetime],
    confirm_by: datetime | None,
    starts: datetime | None,
) -> tuple[datetime, ...]:
    """Reminder times: each after the send (and now) and before the deadline; sorted,
    without repeats, at most MAX_REMINDERS."""
    if not remind_at:
        return ()
    earliest = starts or utcnow()
    times = sorted({t.astimezone(UTC) for t in remind_at if t.tzinfo is not None})
    if (
        confirm_by is None
        or len(times) != len(set(remind_at))
        or len(times) > MAX_REMINDERS
        or any(t <= earliest or t >= confirm_by for t in times)
    ):
        raise errors.INVALID_REMIND_AT.error(max=MAX_REMINDERS)
    return tuple(times)


def preview(draft: Draft) -> tuple[str, str]:
    """The title and sanitised body HTML exactly as recipients will see them."""
    return " ".join((draft.title or "").split())[:MAX_TITLE_CHARS], render_markdown(
        (draft.body or "")[:MAX_BODY_CHARS]
    )


def validate(draft: Draft) -> tuple[str, str, Priority, str | None]:
    """Check a draft's content (not its audience or its times); return it cleaned, or
    raise."""
    return (
        clean_title(draft.title),
        clean_body(draft.body),
        parse_priority(draft.priority),
        clean_link(draft.link),
    )


def prepare(
    session: Session,
    actor: User,
    draft: Draft,
    *,
    confirm_above: int | None = None,
    idempotency_key: str | None = None,
) -> Prepared:
    """Check a draft and resolve its audience, once per request: everything send()
    needs. Emergencies, and audiences of more than `confirm_above` people, need the
    sender's confirmation first (None: nobody is asked, as over the API). A repeat of an
    earlier send is recognised before its times are checked against the clock and its
    audience is resolved, so a retry is answered with the first result even when its
    send time has passed since or its audience could no longer be reached. A scheduled
    send's audience is resolved now, to check it, and again when it goes."""
    audience.require_sender(actor)
    title, body, priority, link = validate(draft)
    drill = bool(draft.drill)
    # The request as asked (its times as given): a retry hashes the same at any time.
    request_hash = fingerprint(
        title,
        body,
        priority,
        bool(draft.require_ack) or draft.confirm_by is not None,
        link,
        draft.expires_at,
        draft.audience,
        extra={
            "send_at": _iso(draft.send_at),
            "confirm_by": _iso(draft.confirm_by),
            "remind_at": sorted(_iso(t) for t in draft.remind_at),
            "drill": drill,
        },
    )
    prepared = Prepared(
        actor=actor,
        title=title,
        body=body,
        priority=priority,
        require_ack=bool(draft.require_ack),
        link=link,
        expires_at=None,
        idempotency_key=clean_idempotency_key(idempotency_key),
        request_hash=request_hash,
        resolved=None,
        drill=drill,
    )
    if prepared.idempotency_key is not None:
        earlier = _by_key(session, actor.id, prepared.idempotency_key)
        if earlier is not None:
            _require_same_request(earlier, request_hash)
            return replace(prepared, earlier=earlier)
    send_at = clean_send_at(draft.send_at)
    confirm_by = clean_confirm_by(draft.confirm_by, send_at)
    resolved = audience.resolve(session, actor, draft.audience)
    return replace(
        prepared,
        require_ack=prepared.require_ack or confirm_by is not None,
        expires_at=clean_expiry(draft.expires_at, send_at),
        send_at=send_at,
        confirm_by=confirm_by,
        remind_at=clean_remind_at(draft.remind_at, confirm_by, send_at),
        resolved=resolved,
        needs_confirmation=confirm_above is not None
        and (priority is Priority.EMERGENCY or resolved.count > confirm_above),
    )


def _iso(value: datetime | None) -> str | None:
    """A time in UTC ISO 8601 (as given when it has no zone: it is refused later)."""
    if value is None:
        return None
    return (value.astimezone(UTC) if value.tzinfo else value).isoformat()


def clean_idempotency_key(key: str | None) -> str | None:
    """An optional Idempotency-Key of 1-255 characters, surrounding blanks ignored."""
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 255:
        raise errors.INVALID_IDEMPOTENCY_KEY.error()
    return key


def send(
    session: Session,
    prepared: Prepared,
    *,
    address: str | None = None,
    delays: reach.Delays | None = None,
) -> SendResult:
    """Freeze a prepared audience into one pending delivery per recipient, queue the
    push and e-mail fan-outs for those no tab reaches (`delays`: when), and commit; a
    scheduled one is only stored, with a job to send it at its time; a repeat returns
    the earlier send instead."""
    actor, key = prepared.actor, prepared.idempotency_key
    if prepared.earlier is not None:
        return _replayed(session, prepared.earlier, actor)
    resolved = prepared.resolved
    if not resolved.user_ids:
        raise errors.NO_ACTIVE_RECIPIENTS.error()
    now = utcnow()
    body_html = render_markdown(prepared.body)
    notification = Notification(
        author_id=actor.id,
        title=prepared.title,
        body=prepared.body,
        body_html=body_html,
        priority=prepared.priority,
        require_ack=prepared.require_ack,
        link=prepared.link,
        expires_at=prepared.expires_at,
        idempotency_key=key,
        request_hash=prepared.request_hash,
        recipient_count=resolved.count,
        created_at=now,
        send_at=prepared.send_at,
        sent_at=None if prepared.send_at else now,
        confirm_by=prepared.confirm_by,
        remind_at=[t.isoformat() for t in prepared.remind_at] or None,
        drill=prepared.drill,
        targets=resolved.targets,
        revision=1,
    )
    notification.revisions.append(
        NotificationRevision.of(notification, editor_id=actor.id, reconfirm=False, at=now)
    )
    session.add(notification)
    try:
        session.flush()
    except IntegrityError:  # the same key, sent at the same moment by a retry
        session.rollback()
        earlier = _by_key(session, actor.id, key) if key else None
        if earlier is None:
            raise
        _require_same_request(earlier, prepared.request_hash)
        return _replayed(session, earlier, actor)
    details = {
        "recipients": resolved.count,
        "priority": prepared.priority.value,
        "audience": [label for label, _ in resolved.breakdown],
    }
    if prepared.drill:
        details["drill"] = True
    if prepared.send_at is not None:
        jobs.enqueue(
            session,
            SCHEDULED_SEND,
            f"{SCHEDULED_SEND}:{notification.id}",
            due_at=prepared.send_at,
            notification_id=notification.id,
        )
        audit.record(
            session,
            "notification.scheduled",
            actor=actor,
            subject=f"notification:{notification.id}",
            address=address,
            send_at=prepared.send_at.isoformat(),
            **details,
        )
        session.commit()
        return SendResult(notification, [], created=True, author_name=actor.name)
    recipient_ids = deliver(session, notification, resolved.user_ids, delays or reach.Delays())
    audit.record(
        session,
        "notification.sent",
        actor=actor,
        subject=f"notification:{notification.id}",
        address=address,
        **details,
    )
    session.commit()
    return SendResult(notification, recipient_ids, created=True, author_name=actor.name)


SCHEDULED_SEND = "send"  # the job that sends a scheduled announcement: services/schedule.py


def deliver(
    session: Session, notification: Notification, user_ids: set[int], delays: reach.Delays
) -> list[int]:
    """Write one pending delivery per recipient and queue what follows a send (pushes,
    e-mails, expiry, reminders); not committed. Returns the recipients, sorted."""
    recipient_ids = sorted(user_ids)
    # One INSERT ... SELECT over the ids sent as a single parameter: no per-row work in
    # Python (an executemany of 10,000 rows spent most of its time building parameters).
    ids = integer_rows(session, recipient_ids)
    session.execute(
        insert(_deliveries).from_select(
            ["notification_id", "user_id", "state", "created_at"],
            select(
                literal(notification.id, _deliveries.c.notification_id.type),
                cast(ids.c.value, Integer),
                literal(DeliveryState.PENDING, _deliveries.c.state.type),
                literal(notification.sent_at, _deliveries.c.created_at.type),
            ),
        )
    )
    reach.schedule(session, notification, delays)
    for follow_up in AFTER_SEND:
        follow_up(session, notification)
    return recipient_ids


# What else a send queues, in its transaction (expiry, reminders, ...): each takes the
# session and the announcement just sent. Modules add theirs when imported.
AFTER_SEND: list = []
# What an edit of a sent announcement changes besides its columns (reminders): each
# takes the session, the announcement and the names of the fields that changed.
AFTER_EDIT: list = []


def fingerprint(
    title: str,
    body: str,
    priority: Priority,
    require_ack: bool,
    link: str | None,
    expires_at: datetime | None,
    spec: audience.AudienceSpec,
    extra: dict | None = None,
) -> str:
    """SHA-256 of everything a send asks for, in a canonical form (`extra`: the times
    and flags a plain send leaves out, so earlier requests keep their hash)."""
    canonical = {
        "title": title,
        "body": body,
        "priority": priority.value,
        "require_ack": require_ack,
        "link": link,
        "expires_at": expires_at.isoformat() if expires_at else None,
        "users": sorted({email.strip().lower() for email in spec.users}),
        "classes": sorted(
            [" ".join(c.name.split()).lower(), sorted(c.audience)] for c in spec.classes
        ),
        "roles": sorted(role.value for role in spec.roles),
        "everyone": spec.everyone,
    }
    canonical.update({k: v for k, v in (extra or {}).items() if v not in (None, [], False)})
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _by_key(session: Session, author_id: int, key: str) -> Notification | None:
    return session.scalar(
        select(Notification).where(
            Notification.author_id == author_id, Notification.idempotency_key == key
        )
    )


def _require_same_request(earlier: Notification, request_hash: str) -> None:
    """A key reused for another request is a client bug, not a retry."""
    if earlier.request_hash != request_hash:
        raise errors.IDEMPOTENCY_KEY_REUSED.error()


def _replayed(session: Session, notification: Notification, author: User) -> SendResult:
    """The earlier send with this key (by this author), as it was sent."""
    recipient_ids = list(
        session.scalars(
            select(Delivery.user_id)
            .where(Delivery.notification_id == notification.id)
            .order_by(Delivery.user_id)
        )
    )
    return SendResult(notification, recipient_ids, created=False, author_name=author.name)


class Stage(enum.StrEnum):
    """Where an announcement is in its life, as its status page and the API say it."""

    SCHEDULED = "scheduled"
    FAILED = "failed"  # a scheduled send that could not go (send_error says why)
    CANCELLED = "cancelled"  # withdrawn before it went
    SENT = "sent"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    OVER = "over"  # an emergency after its all clear


def stage(notification: Notification, now: datetime | None = None) -> Stage:
    """The announcement's stage now."""
    if notification.sent_at is None:
        if notification.retracted_at is not None:
            return Stage.CANCELLED
        return Stage.FAILED if notification.send_error else Stage.SCHEDULED
    if notification.retracted_at is not None:
        return Stage.WITHDRAWN
    if notification.all_clear_at is not None:
        return Stage.OVER
    if notification.expires_at is not None and notification.expires_at <= (now or utcnow()):
        return Stage.EXPIRED
    return Stage.SENT


def in_stage(stage: Stage, now: datetime) -> ColumnElement[bool]:
    """`stage(n, now) is stage` as a WHERE clause (lists filter by stage in SQL; the
    rule is the function above, and tests/test_notification_list.py holds them equal)."""
    n = Notification
    not_sent, sent = n.sent_at.is_(None), n.sent_at.is_not(None)
    kept = and_(sent, n.retracted_at.is_(None))
    expired = and_(n.expires_at.is_not(None), n.expires_at <= now)
    return {
        Stage.CANCELLED: and_(not_sent, n.retracted_at.is_not(None)),
        Stage.FAILED: and_(not_sent, n.retracted_at.is_(None), n.send_error.is_not(None)),
        Stage.SCHEDULED: and_(not_sent, n.retracted_at.is_(None), n.send_error.is_(None)),
        Stage.WITHDRAWN: and_(sent, n.retracted_at.is_not(None)),
        Stage.OVER: and_(kept, n.all_clear_at.is_not(None)),
        Stage.EXPIRED: and_(kept, n.all_clear_at.is_(None), expired),
        Stage.SENT: and_(
            kept, n.all_clear_at.is_(None), or_(n.expires_at.is_(None), n.expires_at > now)
        ),
    }[stage]


def get(session: Session, notification_id: int) -> Notification:
    notification = session.get(Notification, notification_id)
    if notification is None:
        raise errors.NOTIFICATION_NOT_FOUND.error(id=notification_id)
    return notification
