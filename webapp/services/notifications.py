"""Announcements: validate a draft, freeze its audience into deliveries, and commit.

Publishing to live sockets is not done here: the caller does it after commit, at the
edge (`realtime.live`), so a crash between the two loses nothing (clients replay).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlsplit

from sqlalchemy import Integer, cast, func, insert, literal, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import LIKE_ESCAPE, contains_pattern, integer_rows, utcnow
from ..errors import Conflict, NotFound, ValidationFailed
from ..markup import render_markdown
from ..models import (
    Delivery,
    DeliveryState,
    MemberRole,
    Membership,
    Notification,
    Priority,
    Role,
    SchoolClass,
    Target,
    TargetKind,
    User,
)
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


# History: the sent announcements a staff member may see --------------------------------


@dataclass(frozen=True)
class HistoryFilters:
    """What the history list is narrowed to; empty / None means "any"."""

    text: str = ""  # in the title or the body, case-insensitive, % and _ literal
    author_id: int | None = None
    class_id: int | None = None  # announcements that targeted this class
    priority: Priority | None = None
    sent_from: date | None = None  # inclusive, UTC
    sent_to: date | None = None  # inclusive, UTC


@dataclass(frozen=True)
class HistoryRow:
    """One announcement of the list with its author's name and receipt progress."""

    notification: Notification
    author_name: str | None  # None when the author's account was deleted
    read: int  # recipients who read it (confirming counts as reading)
    acknowledged: int


@dataclass(frozen=True)
class HistoryPage:
    """One page of the history, the filters as applied, and what the filters offer."""

    rows: list[HistoryRow]
    total: int
    page: int  # the page shown: the one asked for, kept within 1..pages
    per_page: int
    filters: HistoryFilters  # an author or class the viewer is not offered is dropped
    authors: list[tuple[int, str]]  # (id, name) of everyone who sent something visible
    classes: list[tuple[int, str]]  # (id, name): admins all classes, teachers theirs

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def history(
    session: Session, viewer: User, filters: HistoryFilters, page: int = 1, per_page: int = 25
) -> HistoryPage:
    """The announcements `viewer` may see, newest first, filtered, one page of them with
    read / confirmed counts. Five queries whatever the page size."""
    visible = _visible_to(viewer)
    authors = [
        (i, name)
        for i, name in session.execute(
            select(User.id, User.name)
            .where(User.id.in_(select(Notification.author_id).where(visible)))
            .order_by(User.name, User.id)
        )
    ]
    class_stmt = select(SchoolClass.id, SchoolClass.name).order_by(SchoolClass.name)
    if viewer.role is not Role.ADMIN:
        class_stmt = class_stmt.where(SchoolClass.id.in_(_taught_by(viewer.id)))
    class_options = [(i, name) for i, name in session.execute(class_stmt)]
    # An author or class the form does not offer is dropped (the returned filters say
    # so): the list never depends on a choice the viewer cannot see or make.
    if filters.author_id is not None and filters.author_id not in dict(authors):
        filters = replace(filters, author_id=None)
    if filters.class_id is not None and filters.class_id not in dict(class_options):
        filters = replace(filters, class_id=None)

    conditions = [visible, *_history_conditions(filters)]
    total = session.scalar(select(func.count(Notification.id)).where(*conditions)) or 0
    page = min(max(page, 1), max(1, -(-total // per_page)))
    found = list(
        session.execute(
            select(Notification, User.name)
            .outerjoin(User, User.id == Notification.author_id)
            .where(*conditions)
            .order_by(Notification.created_at.desc(), Notification.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    progress = _progress(session, [n.id for n, _ in found])
    rows = [HistoryRow(n, name, *progress.get(n.id, (0, 0))) for n, name in found]
    return HistoryPage(
        rows=rows,
        total=total,
        page=page,
        per_page=per_page,
        filters=filters,
        authors=authors,
        classes=class_options,
    )


def _taught_by(teacher_id: int):
    """audience.taught_class_ids as a subquery, so visibility stays one query."""
    return select(Membership.class_id).where(
        Membership.user_id == teacher_id, Membership.role == MemberRole.TEACHER
    )


def _targets_class(class_ids):
    """The notification has a class target among `class_ids` (a value list or subquery)."""
    return (
        select(Target.id)
        .where(
            Target.notification_id == Notification.id,
            Target.kind == TargetKind.CLASS,
            Target.class_id.in_(class_ids),
        )
        .exists()
    )


def _visible_to(viewer: User):
    """deliveries.can_view_status as a WHERE clause: admins see everything; others what
    they wrote, and teachers also what targeted a class they teach."""
    if viewer.role is Role.ADMIN:
        return true()
    mine = Notification.author_id == viewer.id
    if viewer.role is not Role.TEACHER:
        return mine
    return or_(mine, _targets_class(_taught_by(viewer.id)))


def _history_conditions(filters: HistoryFilters) -> list:
    """The WHERE clauses of the filters that are set."""
    conditions = []
    if filters.text:
        like = contains_pattern(filters.text.lower())  # % and _ typed are taken literally
        conditions.append(
            or_(
                func.lower(Notification.title).like(like, escape=LIKE_ESCAPE),
                func.lower(Notification.body).like(like, escape=LIKE_ESCAPE),
            )
        )
    if filters.author_id is not None:
        conditions.append(Notification.author_id == filters.author_id)
    if filters.class_id is not None:
        conditions.append(_targets_class([filters.class_id]))
    if filters.priority is not None:
        conditions.append(Notification.priority == filters.priority)
    if filters.sent_from is not None:
        conditions.append(
            Notification.created_at >= datetime.combine(filters.sent_from, time.min, UTC)
        )
    if filters.sent_to is not None and filters.sent_to < date.max:
        next_day = filters.sent_to + timedelta(days=1)
        conditions.append(Notification.created_at < datetime.combine(next_day, time.min, UTC))
    return conditions


def _progress(session: Session, notification_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(read, confirmed) per notification, for a whole page in one grouped query."""
    if not notification_ids:
        return {}
    read_states = [s for s in DeliveryState if s.rank >= DeliveryState.READ.rank]
    return {
        nid: (read, acknowledged)
        for nid, read, acknowledged in session.execute(
            select(
                Delivery.notification_id,
                func.count().filter(Delivery.state.in_(read_states)),
                func.count().filter(Delivery.state == DeliveryState.ACKNOWLEDGED),
            )
            .where(Delivery.notification_id.in_(notification_ids))
            .group_by(Delivery.notification_id)
        )
    }
