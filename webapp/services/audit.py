"""The audit trail: sign-ins, roster changes, token issuing, sends and denials; and
reading it back (admins: filtered, a page at a time, or as CSV)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from .. import errors
from ..db import LIKE_ESCAPE, contains_pattern
from ..models import AuditEvent, Role, User


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


# Reading the log (admins) ------------------------------------------------------------

MAX_CSV_ROWS = 100_000  # one export; narrow the filters for more


@dataclass(frozen=True)
class AuditFilters:
    """What the audit log is narrowed to; empty / None means "any"."""

    actor: str = ""  # in the actor's e-mail or name, case-insensitive
    action: str = ""  # an action ("signin.failed") or its family ("signin")
    at_from: date | None = None  # inclusive, UTC
    at_to: date | None = None  # inclusive, UTC


@dataclass(frozen=True)
class AuditPage:
    """One page of the log, newest first, and the actions it can be filtered by."""

    rows: list[tuple[AuditEvent, User | None]]
    total: int
    page: int
    per_page: int
    actions: list[str]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def require_admin(viewer: User | None) -> None:
    """Only administrators read the audit log."""
    if viewer is None or viewer.role is not Role.ADMIN:
        raise errors.AUDIT_ADMINS_ONLY.error()


def _filtered(filters: AuditFilters):
    """SELECT (event, actor) matching the filters."""
    stmt = select(AuditEvent, User).outerjoin(User, User.id == AuditEvent.actor_id)
    if filters.actor.strip():
        like = contains_pattern(filters.actor.strip().lower())
        stmt = stmt.where(
            or_(
                func.lower(User.name).like(like, escape=LIKE_ESCAPE),
                User.email.like(like, escape=LIKE_ESCAPE),
            )
        )
    if action := filters.action.strip():
        family = contains_pattern(action)[1:-1] + ".%"  # "signin" -> "signin.%", escaped
        stmt = stmt.where(
            or_(AuditEvent.action == action, AuditEvent.action.like(family, escape=LIKE_ESCAPE))
        )
    if filters.at_from is not None:
        stmt = stmt.where(AuditEvent.at >= datetime.combine(filters.at_from, time(), UTC))
    if filters.at_to is not None:
        end = datetime.combine(filters.at_to + timedelta(days=1), time(), UTC)
        stmt = stmt.where(AuditEvent.at < end)
    return stmt


def search(
    session: Session, viewer: User, filters: AuditFilters, page: int = 1, per_page: int = 50
) -> AuditPage:
    """A page of the audit log as filtered, newest first (a page past the end shows the
    last one); admins only."""
    require_admin(viewer)
    stmt = _filtered(filters)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    page = min(max(page, 1), max(1, -(-total // per_page)))
    rows = session.execute(
        stmt.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    actions = list(
        session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action))
    )
    return AuditPage([(e, u) for e, u in rows], total, page, per_page, actions)


CSV_COLUMNS = ("at", "actor_email", "actor_name", "action", "subject", "address", "detail")


def to_csv(session: Session, viewer: User, filters: AuditFilters) -> str:
    """The filtered log as CSV, newest first (at most MAX_CSV_ROWS rows); cells a
    spreadsheet would run as formulas are written as text; admins only."""
    require_admin(viewer)
    from .status import csv_cell  # the one CSV cell rule (formula injection)

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    rows = session.execute(
        _filtered(filters).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(MAX_CSV_ROWS)
    )
    for event, actor in rows:
        writer.writerow(
            csv_cell(value)
            for value in (
                event.at.isoformat(),
                actor.email if actor else "",
                actor.name if actor else "",
                event.action,
                event.subject,
                event.address,
                json.dumps(event.detail, ensure_ascii=False, sort_keys=True)
                if event.detail
                else "",
            )
        )
    return out.getvalue()
