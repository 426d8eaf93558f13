"""Announcements: validate a draft, freeze its audience into deliveries, and commit.

Publishing to live sockets is not done here: the caller does it after commit, at the
edge (`realtime.live`), so a crash between the two loses nothing (clients replay).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import Integer, cast, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import integer_rows, utcnow
from ..errors import Conflict, NotFound, ValidationFailed
from ..markup import render_markdown
from ..models import Delivery, DeliveryState, Notification, Priority, User
from . import audience, audit

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


@dataclass
class SendResult:
    notification: Notification
    recipient_ids: list[int]
    created: bool  # False when an Idempotency-Key matched an earlier send


def clean_title(title: str) -> str:
    """Titles are one line of plain text."""
    title = " ".join((title or "").split())
    if not title:
        raise ValidationFailed("A title is required.", code="title_required")
    if len(title) > MAX_TITLE_CHARS:
        raise ValidationFailed(
            f"Titles are at most {MAX_TITLE_CHARS} characters.", code="title_too_long"
        )
    return title


def clean_body(body: str) -> str:
    body = (body or "").strip()
    if not body:
        raise ValidationFailed("A message is required.", code="body_required")
    if len(body) > MAX_BODY_CHARS:
        raise ValidationFailed(
            f"Messages are at most {MAX_BODY_CHARS} characters (this one has {len(body)}).",
            code="body_too_long",
        )
    return body


def parse_priority(value: str) -> Priority:
    try:
        return Priority((value or "").strip().lower())
    except ValueError:
        raise ValidationFailed(
            "Priority must be normal, urgent or emergency.", code="invalid_priority"
        ) from None


def clean_link(link: str | None) -> str | None:
    """An optional http(s) link shown with the alert."""
    link = (link or "").strip()
    if not link:
        return None
    parts = urlsplit(link)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(link) > MAX_LINK_CHARS:
        raise ValidationFailed("The link must be an http(s) address.", code="invalid_link")
    return link


def clean_expiry(expires_at: datetime | None) -> datetime | None:
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        raise ValidationFailed(
            "expires_at needs a time zone (e.g. 2026-12-01T08:00:00Z).", code="invalid_expires_at"
        )
    if expires_at <= utcnow():
        raise ValidationFailed("expires_at must be in the future.", code="invalid_expires_at")
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


def send(
    session: Session,
    actor: User,
    draft: Draft,
    *,
    idempotency_key: str | None = None,
    address: str | None = None,
) -> SendResult:
    """Check, freeze the audience into one pending delivery per recipient, and commit."""
    audience.require_sender(actor)
    title, body, priority, link, expires_at = validate(draft)
    request_hash = fingerprint(
        title, body, priority, bool(draft.require_ack), link, expires_at, draft.audience
    )
    if idempotency_key is not None:
        idempotency_key = idempotency_key.strip()
        if not idempotency_key or len(idempotency_key) > 255:
            raise ValidationFailed(
                "Idempotency-Key must be 1-255 characters.", code="invalid_idempotency_key"
            )
        earlier = _by_key(session, actor.id, idempotency_key)
        if earlier is not None:
            return _replayed(session, earlier, request_hash)
    resolved = audience.resolve(session, actor, draft.audience)
    if not resolved.user_ids:
        raise ValidationFailed(
            "Nobody is in that audience (no active recipients).", code="empty_audience"
        )
    now = utcnow()
    notification = Notification(
        author_id=actor.id,
        title=title,
        body=body,
        body_html=render_markdown(body),
        priority=priority,
        require_ack=bool(draft.require_ack),
        link=link,
        expires_at=expires_at,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        recipient_count=resolved.count,
        created_at=now,
        targets=resolved.targets,
    )
    session.add(notification)
    try:
        session.flush()
    except IntegrityError:  # the same key, sent at the same moment by a retry
        session.rollback()
        earlier = _by_key(session, actor.id, idempotency_key) if idempotency_key else None
        if earlier is None:
            raise
        return _replayed(session, earlier, request_hash)
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
    audit.record(
        session,
        "notification.sent",
        actor=actor,
        subject=f"notification:{notification.id}",
        address=address,
        recipients=resolved.count,
        priority=priority.value,
        audience=[label for label, _ in resolved.breakdown],
    )
    session.commit()
    return SendResult(notification, recipient_ids, created=True)


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


def _replayed(session: Session, notification: Notification, request_hash: str) -> SendResult:
    """The earlier send with this key; a key reused for another request is a client bug."""
    if notification.request_hash != request_hash:
        raise Conflict(
            "This Idempotency-Key was already used for a different announcement.",
            code="idempotency_key_reused",
        )
    recipient_ids = list(
        session.scalars(
            select(Delivery.user_id)
            .where(Delivery.notification_id == notification.id)
            .order_by(Delivery.user_id)
        )
    )
    return SendResult(notification, recipient_ids, created=False)


def get(session: Session, notification_id: int) -> Notification:
    notification = session.get(Notification, notification_id)
    if notification is None:
        raise NotFound(f"No announcement with id {notification_id}.", code="notification_not_found")
    return notification
