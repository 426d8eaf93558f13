"""Announcements: validate a draft and resolve its audience (prepare), then freeze the
audience into deliveries and commit (send).

Publishing to live sockets is not done here: the caller does it after commit, at the
edge (`realtime.live`), so a crash between the two loses nothing (clients replay).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import Integer, cast, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import errors
from ..db import integer_rows, utcnow
from ..markup import render_markdown
from ..models import Delivery, DeliveryState, Notification, Priority, User
from . import audience, audit, reach

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


@dataclass
class SendResult:
    """What a send did, and what the broadcast after commit needs."""

    notification: Notification
    recipient_ids: list[int]
    created: bool  # False when an Idempotency-Key matched an earlier send
    author_name: str | None  # for the broadcast after commit


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
    parts = urlsplit(link)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(link) > MAX_LINK_CHARS:
        raise errors.INVALID_LINK.error()
    return link


def clean_expiry(expires_at: datetime | None) -> datetime | None:
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        raise errors.INVALID_EXPIRES_AT.error()
    if expires_at <= utcnow():
        raise errors.EXPIRY_IN_PAST.error()
    return expires_at


def preview(draft: Draft) -> tuple[str, str]:
    """The title and sanitised body HTML exactly as recipients will see them."""
    return " ".join((draft.title or "").split())[:MAX_TITLE_CHARS], render_markdown(
        (draft.body or "")[:MAX_BODY_CHARS]
    )


def validate(draft: Draft) -> tuple[str, str, Priority, str | None, datetime | None]:
    """Check a draft's content (not its audience); return it cleaned, or raise."""
    return (
        clean_title(draft.title),
        clean_body(draft.body),
        parse_priority(draft.priority),
        clean_link(draft.link),
        clean_expiry(draft.expires_at),
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
    earlier send is recognised before the audience is resolved, so a retry is answered
    with the first result even if that audience could no longer be reached."""
    audience.require_sender(actor)
    title, body, priority, link, expires_at = validate(draft)
    require_ack = bool(draft.require_ack)
    prepared = Prepared(
        actor=actor,
        title=title,
        body=body,
        priority=priority,
        require_ack=require_ack,
        link=link,
        expires_at=expires_at,
        request_hash=fingerprint(
            title, body, priority, require_ack, link, expires_at, draft.audience
        ),
        idempotency_key=clean_idempotency_key(idempotency_key),
        resolved=None,
    )
    if prepared.idempotency_key is not None:
        earlier = _by_key(session, actor.id, prepared.idempotency_key)
        if earlier is not None:
            _require_same_request(earlier, prepared.request_hash)
            return replace(prepared, earlier=earlier)
    resolved = audience.resolve(session, actor, draft.audience)
    return replace(
        prepared,
        resolved=resolved,
        needs_confirmation=confirm_above is not None
        and (priority is Priority.EMERGENCY or resolved.count > confirm_above),
    )


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
    repeat returns the earlier send instead."""
    actor, key = prepared.actor, prepared.idempotency_key
    if prepared.earlier is not None:
        return _replayed(session, prepared.earlier, actor)
    resolved = prepared.resolved
    if not resolved.user_ids:
        raise errors.NO_ACTIVE_RECIPIENTS.error()
    now = utcnow()
    notification = Notification(
        author_id=actor.id,
        title=prepared.title,
        body=prepared.body,
        body_html=render_markdown(prepared.body),
        priority=prepared.priority,
        require_ack=prepared.require_ack,
        link=prepared.link,
        expires_at=prepared.expires_at,
        idempotency_key=key,
        request_hash=prepared.request_hash,
        recipient_count=resolved.count,
        created_at=now,
        targets=resolved.targets,
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
    recipient_ids = sorted(resolved.user_ids)
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
                literal(now, _deliveries.c.created_at.type),
            ),
        )
    )
    reach.schedule(session, notification, delays or reach.Delays())
    audit.record(
        session,
        "notification.sent",
        actor=actor,
        subject=f"notification:{notification.id}",
        address=address,
        recipients=resolved.count,
        priority=prepared.priority.value,
        audience=[label for label, _ in resolved.breakdown],
    )
    session.commit()
    return SendResult(notification, recipient_ids, created=True, author_name=actor.name)


def fingerprint(
    title: str,
    body: str,
    priority: Priority,
    require_ack: bool,
    link: str | None,
    expires_at: datetime | None,
    spec: audience.AudienceSpec,
) -> str:
    """SHA-256 of everything a send asks for, in a canonical form."""
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


def get(session: Session, notification_id: int) -> Notification:
    notification = session.get(Notification, notification_id)
    if notification is None:
        raise errors.NOTIFICATION_NOT_FOUND.error(id=notification_id)
    return notification
