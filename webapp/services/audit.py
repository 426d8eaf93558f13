"""The audit trail: sign-ins, roster changes, token issuing, sends and denials."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ..models import AuditEvent, User


def record(
    session: Session,
    action: str,
    *,
    actor: User | None = None,
    subject: str | None = None,
    address: str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Add an audit event to the session; it is committed with the change it describes."""
    event = AuditEvent(
        action=action,
        actor_id=actor.id if actor is not None else None,
        subject=subject[:300] if subject else None,
        address=address,
        detail=detail or None,
    )
    session.add(event)
    return event
