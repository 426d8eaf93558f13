"""Who is online, as staff see it: counts by role and by class, and the people online.

Presence itself (which sockets are open) comes from the realtime side; this module turns
it into what a viewer may see: admins the whole school, teachers their own classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import errors
from ..models import MemberRole, Membership, Role, SchoolClass, User
from . import audience

# user id -> their presence, summed over every process: `.tabs` open (a browser's tabs
# may share one socket) and `.since` (epoch seconds of the first socket still open).
Presence = Mapping[int, Any]


@dataclass(frozen=True)
class OnlinePerson:
    user: User
    tabs: int
    since: datetime


@dataclass
class OnlineSummary:
    online: int = 0
    people_total: int = 0
    by_role: list[tuple[str, int, int]] = field(default_factory=list)  # role, online, all
    by_class: list[tuple[str, int, int]] = field(default_factory=list)  # class, online, all
    people: list[OnlinePerson] = field(default_factory=list)


def visible_to(session: Session, user: User, presence: Presence) -> OnlineSummary:
    """What `user` may see of presence: admins the whole school, teachers their own
    classes; nobody else (Forbidden)."""
    if not user.role.is_staff:
        raise errors.PRESENCE_STAFF_ONLY.error()
    return summary(session, None if user.role is Role.ADMIN else user, presence)


def summary(session: Session, viewer: User | None, presence: Presence) -> OnlineSummary:
    """What `viewer` sees of presence (None or an admin: the whole school)."""
    scope = (
        None
        if viewer is None or viewer.role is Role.ADMIN
        else (audience.reach_of(session, viewer) | {viewer.id})
    )
    users = select(User.id, User.role).where(User.active.is_(True))
    if scope is not None:
        users = users.where(User.id.in_(scope))
    roles = session.execute(users).all()
    visible = {uid for uid, _ in roles}
    online_ids = visible & set(presence)
    result = OnlineSummary(online=len(online_ids), people_total=len(visible))
    for role in Role:
        members = [uid for uid, r in roles if r is role]
        if members:
            result.by_role.append((role.value, len(set(members) & online_ids), len(members)))
    result.by_class = _by_class(session, viewer if scope is not None else None, online_ids)
    people = session.scalars(select(User).where(User.id.in_(online_ids)).order_by(User.name))
    result.people = [
        OnlinePerson(u, presence[u.id].tabs, datetime.fromtimestamp(presence[u.id].since, UTC))
        for u in people
    ]
    return result


def _by_class(
    session: Session, teacher: User | None, online_ids: set[int]
) -> list[tuple[str, int, int]]:
    """Students online per class (a teacher's own classes, or every class)."""
    stmt = (
        select(SchoolClass.name, Membership.user_id)
        .join(Membership, Membership.class_id == SchoolClass.id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.role == MemberRole.STUDENT, User.active.is_(True))
        .order_by(SchoolClass.name)
    )
    if teacher is not None:
        stmt = stmt.where(SchoolClass.id.in_(audience.taught_class_ids(session, teacher.id)))
    per_class: dict[str, list[int]] = {}
    for name, user_id in session.execute(stmt):
        per_class.setdefault(name, []).append(user_id)
    return [(name, len(set(ids) & online_ids), len(ids)) for name, ids in per_class.items()]
