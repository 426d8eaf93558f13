"""A person's data: all of it, exported as JSON; or erased, for good.

Export (admins, or the command line): the profile, classes and guardian links, every
announcement received with its receipt (state, channel, times, roll-call answer),
devices (the push service's host and when, never an endpoint's path or its keys), API
tokens owned (names and dates, never a secret or a part of one), what they did as
recorded in the audit log, and for staff what they sent.

Erasure (admins, or the command line) cannot be undone. The account stays as an
anonymous row, so the receipts it gave stay in every announcement's counts, but:
its name becomes ERASED_NAME and its e-mail `erased-<id>@erased.invalid` (unique, and
never deliverable: .invalid is reserved); its password and language are removed; it is
deactivated (sessions end; the caller closes open sockets through realtime); its
devices, API tokens, classes and guardian links are deleted; queued pushes and e-mails
to it are cancelled; roll-call free texts it wrote are removed (the answer stays); and
its old e-mail and name are replaced in the audit log's subjects and details.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import String, cast, delete, or_, select, update
from sqlalchemy.orm import Session, aliased

from .. import errors
from ..db import utcnow
from ..i18n import N_
from ..models import (
    ApiToken,
    AuditEvent,
    Delivery,
    Guardianship,
    Job,
    JobState,
    Membership,
    Notification,
    PushSubscription,
    Role,
    User,
)
from . import audit, classes, users
from .push import device_name

# Stored as it is, in English, whatever the language (pages show it translated, with
# the person_name filter of webapp/i18n.py).
ERASED_NAME = N_("Erased person")
ERASED_DOMAIN = "erased.invalid"
EXPORT_FORMAT = "schoolbell.person-export/1"


def erased_email(user_id: int) -> str:
    """The address an erased account keeps: unique, and never anybody's."""
    return f"erased-{user_id}@{ERASED_DOMAIN}"


def require_admin(actor: User | None) -> None:
    """Admins only; `actor` None is the command line."""
    if actor is not None and actor.role is not Role.ADMIN:
        raise errors.PRIVACY_ADMINS_ONLY.error()


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# Export ------------------------------------------------------------------------------


def export(
    session: Session, actor: User | None, user_id: int, address: str | None = None
) -> dict[str, Any]:
    """Everything Schoolbell holds about one person, as a JSON-ready dict; audited."""
    require_admin(actor)
    person = classes.person(session, user_id)
    user = person.user
    data = {
        "format": EXPORT_FORMAT,
        "exported_at": utcnow().isoformat(),
        "profile": _profile(user),
        "classes": [{"name": c.name, "role": how.value} for c, how in person.classes],
        "guardians": [
            _link(g, session, guardian_id=g.id, student_id=user.id)
            for g in classes.guardians_of(session, user.id)
        ],
        "guardian_of": [
            _link(w, session, guardian_id=user.id, student_id=w.id)
            for w in classes.wards_of(session, user.id)
        ],
        "received": _received(session, user.id),
        "devices": _devices(session, user.id),
        "api_tokens": _api_tokens(session, user.id),
        "sent": _sent(session, user.id) if user.is_staff else [],
        "activity": _activity(session, user.id),
    }
    audit.record(
        session,
        "user.exported",
        actor=actor,
        subject=f"user:{user.email}",
        address=address,
        user_id=user.id,
    )
    session.commit()
    return data


def export_by_email(
    session: Session, actor: User | None, email: str, address: str | None = None
) -> dict[str, Any]:
    """export() of the person with this address (admins only: checked before the
    address is looked up, so nobody else learns which addresses exist)."""
    require_admin(actor)
    return export(session, actor, users.get_by_email(session, email).id, address)


def _profile(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role.value,
        "language": user.language,
        "active": user.active,
        "push_enabled": user.push_enabled,
        "email_enabled": user.email_enabled,
        "created_at": _iso(user.created_at),
        "updated_at": _iso(user.updated_at),
        "erased_at": _iso(user.erased_at),
    }


def _link(other: User, session: Session, *, guardian_id: int, student_id: int) -> dict:
    """A guardian link, with the other person and since when."""
    since = session.scalar(
        select(Guardianship.created_at).where(
            Guardianship.guardian_id == guardian_id, Guardianship.student_id == student_id
        )
    )
    return {"id": other.id, "name": other.name, "email": other.email, "since": _iso(since)}


def _received(session: Session, user_id: int) -> list[dict[str, Any]]:
    """Every announcement this person received, oldest first, with their receipt."""
    author = aliased(User)
    rows = session.execute(
        select(Delivery, Notification, author.name)
        .join(Notification, Notification.id == Delivery.notification_id)
        .outerjoin(author, author.id == Notification.author_id)
        .where(Delivery.user_id == user_id)
        .order_by(Notification.id)
    )
    return [
        {
            "notification_id": n.id,
            "title": n.title,
            "priority": n.priority.value,
            "drill": n.drill,
            "author": author_name,
            "sent_at": _iso(n.sent_at),
            "receipt": {
                "state": d.state.value,
                "channel": d.channel.value if d.channel else None,
                "delivered_at": _iso(d.delivered_at),
                "read_at": _iso(d.read_at),
                "acknowledged_at": _iso(d.acknowledged_at),
                "pushed_at": _iso(d.pushed_at),
                "emailed_at": _iso(d.emailed_at),
                "reminded_at": _iso(d.reminded_at),
                "answer": d.answer.value if d.answer else None,
                "answer_text": d.answer_text,
                "answered_at": _iso(d.answered_at),
            },
        }
        for d, n, author_name in rows
    ]


def _devices(session: Session, user_id: int) -> list[dict[str, Any]]:
    """Push subscriptions: which push service and when; never the keys or the path
    (the endpoint's path is what lets anyone push to the device)."""
    return [
        {
            "device": device_name(s.user_agent),
            "push_service": urlsplit(s.endpoint).hostname,
            "created_at": _iso(s.created_at),
            "last_success_at": _iso(s.last_success_at),
        }
        for s in session.scalars(
            select(PushSubscription)
            .where(PushSubscription.user_id == user_id)
            .order_by(PushSubscription.id)
        )
    ]


def _api_tokens(session: Session, user_id: int) -> list[dict[str, Any]]:
    """API tokens acting as this person: names and dates only."""
    return [
        {
            "name": t.name,
            "created_at": _iso(t.created_at),
            "last_used_at": _iso(t.last_used_at),
            "revoked_at": _iso(t.revoked_at),
        }
        for t in session.scalars(
            select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)
        )
    ]


def _sent(session: Session, user_id: int) -> list[dict[str, Any]]:
    """Announcements this staff member wrote, oldest first."""
    return [
        {
            "id": n.id,
            "title": n.title,
            "body": n.body,
            "priority": n.priority.value,
            "drill": n.drill,
            "created_at": _iso(n.created_at),
            "send_at": _iso(n.send_at),
            "sent_at": _iso(n.sent_at),
            "retracted_at": _iso(n.retracted_at),
            "recipient_count": n.recipient_count,
        }
        for n in session.scalars(
            select(Notification).where(Notification.author_id == user_id).order_by(Notification.id)
        )
    ]


def _activity(session: Session, user_id: int) -> list[dict[str, Any]]:
    """What the audit log recorded this person doing (sign-ins, changes, sends)."""
    return [
        {"at": _iso(e.at), "action": e.action, "subject": e.subject, "address": e.address}
        for e in session.scalars(
            select(AuditEvent).where(AuditEvent.actor_id == user_id).order_by(AuditEvent.id)
        )
    ]


def export_json(data: dict[str, Any]) -> str:
    """An export as the file people download: indented UTF-8 JSON."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# Erasure -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Erased:
    """An erasure done: the account's id and the address it keeps."""

    user_id: int
    email: str
    erased_at: datetime


def check_confirmation(user: User, typed: str) -> None:
    """The erase form asks for the person's e-mail, typed again: erasure is final."""
    if (typed or "").strip().lower() != user.email:
        raise errors.ERASURE_NOT_CONFIRMED.error()


def erase(session: Session, actor: User | None, user_id: int, address: str | None = None) -> Erased:
    """Erase a person (see the module's docstring) and commit. The caller then closes
    their open sockets everywhere (live().user_disabled)."""
    require_admin(actor)
    user = users.get(session, user_id)
    if actor is not None and user.id == actor.id:
        raise errors.SELF_ERASURE.error()
    if user.erased_at is not None:
        raise errors.ALREADY_ERASED.error()
    old_email, old_name = user.email, user.name
    now = utcnow()
    users.deactivate(user)
    user.email = erased_email(user.id)
    user.name = ERASED_NAME
    user.password_hash = None
    user.language = None
    user.push_enabled = user.email_enabled = False
    user.erased_at = now
    session.flush()
    their_deliveries = select(Delivery.id).where(Delivery.user_id == user.id)
    session.execute(
        update(Job)
        .where(Job.state == JobState.QUEUED, Job.delivery_id.in_(their_deliveries))
        .values(state=JobState.CANCELLED, finished_at=now, last_error="the person was erased")
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Delivery)
        .where(Delivery.user_id == user.id, Delivery.answer_text.is_not(None))
        .values(answer_text=None)
        .execution_options(synchronize_session=False)
    )
    for model, where in (
        (PushSubscription, PushSubscription.user_id == user.id),
        (ApiToken, ApiToken.user_id == user.id),
        (Membership, Membership.user_id == user.id),
        (
            Guardianship,
            or_(Guardianship.guardian_id == user.id, Guardianship.student_id == user.id),
        ),
    ):
        session.execute(delete(model).where(where).execution_options(synchronize_session=False))
    _scrub_audit(session, old_email, old_name, user.email)
    audit.record(
        session,
        "user.erased",
        actor=actor,
        subject=f"user:{user.email}",
        address=address,
        user_id=user.id,
    )
    session.commit()
    session.expire(user, ["memberships"])
    return Erased(user.id, user.email, now)


def erase_by_email(
    session: Session, actor: User | None, email: str, address: str | None = None
) -> Erased:
    """erase() the person with this address (admins only, checked first)."""
    require_admin(actor)
    return erase(session, actor, users.get_by_email(session, email).id, address)


def _scrub_audit(session: Session, email: str, name: str, replacement: str) -> int:
    """Replace an erased person's e-mail (wherever it appears) and name (where it is a
    whole value) in the audit log's subjects and details; return how many entries."""
    detail_text = cast(AuditEvent.detail, String)
    # JSON text escapes non-ASCII as \\uXXXX: look for both spellings.
    needles = {email, json.dumps(email)[1:-1]}
    found = session.scalars(
        select(AuditEvent).where(
            or_(
                AuditEvent.subject.contains(email, autoescape=True),
                *(detail_text.contains(n, autoescape=True) for n in needles),
                detail_text.contains(json.dumps(name), autoescape=True),
            )
        )
    ).all()
    for event in found:
        if event.subject:
            event.subject = event.subject.replace(email, replacement)
        if event.detail:
            event.detail = _scrubbed(event.detail, email, name, replacement)
    return len(found)


def _scrubbed(value: Any, email: str, name: str, replacement: str) -> Any:
    """`value` (JSON) with the e-mail replaced in every string and the name as a value."""
    if isinstance(value, dict):
        return {k: _scrubbed(v, email, name, replacement) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, email, name, replacement) for v in value]
    if isinstance(value, str):
        return ERASED_NAME if value == name else value.replace(email, replacement)
    return value
