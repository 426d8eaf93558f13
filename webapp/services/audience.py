"""Audiences: a target expression (users, classes with audiences, roles, everyone) ->
the frozen set of recipient ids, with the permission rules of who may reach whom.

Admins may reach anyone. Teachers may reach the students, guardians and teachers of
their own classes, and individual people among them. Students and guardians never send.
Deactivated users receive nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from .. import errors, i18n
from ..db import LIKE_ESCAPE, contains_pattern
from ..i18n import N_, Phrase
from ..models import (
    Guardianship,
    MemberRole,
    Membership,
    Role,
    SchoolClass,
    Target,
    TargetKind,
    User,
)
from . import classes as classes_service

CLASS_AUDIENCES = ("students", "guardians", "teachers")

# A whole role as an audience (one message each: languages agree "all" with the noun).
ALL_OF_ROLE = {
    Role.ADMIN: N_("all admins"),
    Role.TEACHER: N_("all teachers"),
    Role.STUDENT: N_("all students"),
    Role.GUARDIAN: N_("all guardians"),
}


@dataclass(frozen=True)
class ClassTarget:
    """Some members of one class, e.g. ('7b', {'students', 'guardians'})."""

    name: str
    audience: frozenset[str]


@dataclass(frozen=True)
class AudienceSpec:
    """What the author chose; resolved into recipients at send time."""

    users: tuple[str, ...] = ()  # email addresses
    classes: tuple[ClassTarget, ...] = ()
    roles: tuple[Role, ...] = ()
    everyone: bool = False

    def is_empty(self) -> bool:
        return not (self.users or self.classes or self.roles or self.everyone)


@dataclass
class Resolved:
    """The frozen audience: recipient ids, what each target added, and Target rows."""

    user_ids: set[int] = field(default_factory=set)
    # (who, how many): English for the audit trail; pages show `i18n.translated(who)`.
    breakdown: list[tuple[Phrase, int]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.user_ids)


def parse_class_target(name: str, audience) -> ClassTarget:
    """Validate a class target's audience list (default: students)."""
    if audience is None:
        audience = ["students"]
    if (
        not isinstance(audience, list | tuple | set | frozenset)
        or not audience
        or not all(isinstance(a, str) for a in audience)  # [{}] is no audience (nor a 500)
    ):
        raise errors.INVALID_AUDIENCE.error(name=name, allowed=", ".join(CLASS_AUDIENCES))
    unknown = set(audience) - set(CLASS_AUDIENCES)
    if unknown:
        raise errors.UNKNOWN_AUDIENCE.error(
            name=name, unknown=sorted(unknown), allowed=", ".join(CLASS_AUDIENCES)
        )
    return ClassTarget(name=name, audience=frozenset(audience))


def require_sender(actor: User) -> None:
    """Only staff send announcements."""
    if actor is None or not actor.role.is_staff:
        raise errors.NOT_A_SENDER.error()


def id_set(session: Session, statement) -> set[int]:
    """The ids a one-column SELECT returns. Run through Core: for tens of thousands of
    plain integers the ORM's row loading costs several times the query."""
    return set(session.connection().scalars(statement).all())


def taught_class_ids(session: Session, teacher_id: int) -> set[int]:
    """The classes a teacher teaches."""
    return set(
        session.scalars(
            select(Membership.class_id).where(
                Membership.user_id == teacher_id, Membership.role == MemberRole.TEACHER
            )
        )
    )


def class_member_ids(session: Session, class_ids: set[int], audience: frozenset[str]) -> set[int]:
    """Active students / guardians / teachers of these classes."""
    if not class_ids:
        return set()
    ids: set[int] = set()
    for member_role, wanted in ((MemberRole.STUDENT, "students"), (MemberRole.TEACHER, "teachers")):
        if wanted in audience:
            ids |= id_set(
                session,
                select(Membership.user_id)
                .join(User, User.id == Membership.user_id)
                .where(
                    Membership.class_id.in_(class_ids),
                    Membership.role == member_role,
                    User.active.is_(True),
                ),
            )
    if "guardians" in audience:
        students = select(Membership.user_id).where(
            Membership.class_id.in_(class_ids), Membership.role == MemberRole.STUDENT
        )
        ids |= id_set(
            session,
            select(Guardianship.guardian_id)
            .join(User, User.id == Guardianship.guardian_id)
            .where(Guardianship.student_id.in_(students), User.active.is_(True)),
        )
    return ids


def reach_of(session: Session, actor: User) -> set[int] | None:
    """Who a sender may reach one by one: None for admins (anyone), else their classes'
    students, guardians and teachers."""
    if actor.role is Role.ADMIN:
        return None
    return class_member_ids(
        session, taught_class_ids(session, actor.id), frozenset(CLASS_AUDIENCES)
    )


def resolve(session: Session, actor: User, spec: AudienceSpec) -> Resolved:
    """Check the author may reach every target, then freeze the recipients."""
    require_sender(actor)
    if spec.is_empty():
        raise errors.EMPTY_AUDIENCE.error()
    is_admin = actor.role is Role.ADMIN
    if (spec.everyone or spec.roles) and not is_admin:
        raise errors.AUDIENCE_FORBIDDEN.error()
    resolved = Resolved()
    if spec.everyone:
        everyone = id_set(session, select(User.id).where(User.active.is_(True)))
        _add(resolved, Phrase(N_("everyone")), everyone)
        resolved.targets.append(Target(kind=TargetKind.EVERYONE))
    for role in spec.roles:
        _add(
            resolved,
            Phrase(ALL_OF_ROLE[role]),
            id_set(session, select(User.id).where(User.role == role, User.active.is_(True))),
        )
        resolved.targets.append(Target(kind=TargetKind.ROLE, role=role))
    taught = None if is_admin else taught_class_ids(session, actor.id)
    for target in spec.classes:
        school_class = classes_service.get_by_name(session, target.name)
        if taught is not None and school_class.id not in taught:
            raise errors.NOT_YOUR_CLASS.error(class_name=school_class.name)
        _add_class(session, resolved, school_class, target.audience)
    if spec.users:
        _add_users(session, resolved, actor, spec.users)
    return resolved


def _add(resolved: Resolved, label: Phrase, ids: set[int]) -> None:
    resolved.user_ids |= ids
    resolved.breakdown.append((label, len(ids)))


def _add_class(
    session: Session, resolved: Resolved, school_class: SchoolClass, audience: frozenset[str]
) -> None:
    for part in CLASS_AUDIENCES:  # fixed order, so breakdowns read the same every time
        if part in audience:
            ids = class_member_ids(session, {school_class.id}, frozenset([part]))
            who = Phrase(i18n.LABELS["roles"][part])
            _add(
                resolved,
                Phrase(
                    N_("%(audience)s in %(class_name)s"),
                    audience=who,
                    class_name=school_class.name,
                ),
                ids,
            )
    resolved.targets.append(
        Target(
            kind=TargetKind.CLASS,
            class_id=school_class.id,
            audience=[p for p in CLASS_AUDIENCES if p in audience],
        )
    )


def _add_users(session: Session, resolved: Resolved, actor: User, emails: tuple[str, ...]) -> None:
    wanted = {e.strip().lower() for e in emails}
    found = {u.email: u for u in session.scalars(select(User).where(User.email.in_(wanted)))}
    missing = sorted(wanted - set(found))
    if missing:
        raise errors.USERS_NOT_FOUND.error(emails=", ".join(missing))
    reach = reach_of(session, actor)
    # Deactivated people receive nothing anyway (and reach_of counts only active ones).
    outside = sorted(
        email
        for email, user in found.items()
        if reach is not None and user.active and user.id not in reach and user.id != actor.id
    )
    if outside:
        raise errors.NOT_YOUR_PEOPLE.error(emails=", ".join(outside))
    ids = {u.id for u in found.values() if u.active}
    _add(resolved, Phrase(N_("people chosen one by one")), ids)
    resolved.targets.extend(Target(kind=TargetKind.USER, user_id=u.id) for u in found.values())


@dataclass
class Options:
    """What a sender is offered on the compose page."""

    classes: list[SchoolClass]
    roles: list[Role]
    everyone: bool


def options_for(session: Session, actor: User) -> Options:
    """Admins: every class, every role and the whole school. Teachers: their classes."""
    require_sender(actor)
    if actor.role is Role.ADMIN:
        return Options(
            list(session.scalars(select(SchoolClass).order_by(SchoolClass.name))), list(Role), True
        )
    taught = taught_class_ids(session, actor.id)
    return Options(
        list(
            session.scalars(
                select(SchoolClass).where(SchoolClass.id.in_(taught)).order_by(SchoolClass.name)
            )
        ),
        [],
        False,
    )


def people_in_reach(session: Session, actor: User, query: str, limit: int = 20) -> list[User]:
    """Active people matching `query` (name or email) whom `actor` may send to."""
    require_sender(actor)
    if not (query or "").strip():
        return []
    like = contains_pattern(query.strip().lower())
    stmt = select(User).where(
        User.active.is_(True),
        or_(
            func.lower(User.name).like(like, escape=LIKE_ESCAPE),
            User.email.like(like, escape=LIKE_ESCAPE),
        ),
    )
    reach = reach_of(session, actor)
    if reach is not None:
        stmt = stmt.where(User.id.in_(reach))
    return list(session.scalars(stmt.order_by(User.name).limit(limit)))


def names_of(session: Session, emails: list[str]) -> list[User]:
    """The users with these emails (for showing chosen people again), by name."""
    wanted = {e.strip().lower() for e in emails if e.strip()}
    if not wanted:
        return []
    return list(session.scalars(select(User).where(User.email.in_(wanted)).order_by(User.name)))


def spec_of(session: Session, targets: list[Target]) -> AudienceSpec:
    """The audience an author chose, read back from its Target rows (for a scheduled
    send, resolved again when it goes). A person or class deleted since is left out."""
    users, classes, roles, everyone = [], [], [], False
    for target in targets:
        if target.kind is TargetKind.EVERYONE:
            everyone = True
        elif target.kind is TargetKind.ROLE and target.role is not None:
            roles.append(target.role)
        elif target.kind is TargetKind.USER and target.user_id is not None:
            user = session.get(User, target.user_id)
            if user is not None:
                users.append(user.email)
        elif target.kind is TargetKind.CLASS and target.class_id is not None:
            school_class = session.get(SchoolClass, target.class_id)
            if school_class is not None:
                classes.append(ClassTarget(school_class.name, frozenset(target.audience or ())))
    return AudienceSpec(tuple(users), tuple(classes), tuple(roles), everyone)
