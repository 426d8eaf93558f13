"""School classes, their members (students, teachers) and guardianships."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from .. import errors
from ..models import Guardianship, MemberRole, Membership, Role, SchoolClass, User
from . import audit, users
from .users import (
    UserInput,
    build_user,
    get_by_email,
    insert_unique,
    new_password_hash,
    require_admin,
)
from .users import get as get_user

CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._\-]{0,63}$")


def normalise_class_name(name: str) -> str:
    """'  7B ' -> '7b': class names are short, compared without case."""
    name = " ".join((name or "").split()).lower()
    if not CLASS_NAME.match(name):
        raise errors.INVALID_CLASS_NAME.error(name=name)
    return name


def by_name(session: Session, name: str) -> SchoolClass | None:
    """The class with this name (any case), or None."""
    return session.scalar(
        select(SchoolClass).where(SchoolClass.name == " ".join((name or "").split()).lower())
    )


def get(session: Session, class_id: int) -> SchoolClass:
    """The class with this id, with its members loaded, or NotFound."""
    school_class = session.scalar(
        select(SchoolClass)
        .where(SchoolClass.id == class_id)
        .options(selectinload(SchoolClass.memberships).selectinload(Membership.user))
    )
    if school_class is None:
        raise errors.CLASS_ID_NOT_FOUND.error(class_id=class_id)
    return school_class


def get_by_name(session: Session, name: str) -> SchoolClass:
    """The class with this name, or NotFound."""
    school_class = by_name(session, name)
    if school_class is None:
        raise errors.CLASS_NOT_FOUND.error(name=name)
    return school_class


def list_with_counts(session: Session) -> list[tuple[SchoolClass, int, int]]:
    """Every class, by name, with its number of students and of teachers."""
    students = func.count(Membership.id).filter(Membership.role == MemberRole.STUDENT)
    teachers = func.count(Membership.id).filter(Membership.role == MemberRole.TEACHER)
    rows = session.execute(
        select(SchoolClass, students, teachers)
        .outerjoin(Membership, Membership.class_id == SchoolClass.id)
        .group_by(SchoolClass.id)
        .order_by(SchoolClass.name)
    )
    return [(c, s, t) for c, s, t in rows]


def build_class(session: Session, name: str) -> SchoolClass:
    """Validate and add a new class to the session (no commit, no audit)."""
    name = normalise_class_name(name)
    if by_name(session, name) is not None:
        raise errors.DUPLICATE_CLASS.error(name=name)
    school_class = SchoolClass(name=name)
    insert_unique(
        session,
        school_class,
        errors.DUPLICATE_CLASS.error(name=name),
    )
    return school_class


def create(
    session: Session, actor: User | None, name: str, address: str | None = None
) -> SchoolClass:
    """Create a class (admins; None = command line) and commit."""
    if actor is not None:
        require_admin(actor)
    school_class = build_class(session, name)
    audit.record(
        session, "class.created", actor=actor, subject=f"class:{school_class.name}", address=address
    )
    session.commit()
    return school_class


def member_role_for(user: User) -> MemberRole:
    """Students join as students, teachers (and admins who teach) as teachers."""
    if user.role is Role.STUDENT:
        return MemberRole.STUDENT
    if user.role in (Role.TEACHER, Role.ADMIN):
        return MemberRole.TEACHER
    raise errors.INVALID_MEMBER.error(email=user.email, role=user.role.value)


def ensure_member(session: Session, school_class: SchoolClass, user: User) -> bool:
    """Add `user` to the class unless already there (no commit); True if added."""
    exists = session.scalar(
        select(Membership).where(
            Membership.class_id == school_class.id, Membership.user_id == user.id
        )
    )
    if exists is not None:
        return False
    session.add(Membership(class_id=school_class.id, user_id=user.id, role=member_role_for(user)))
    session.flush()
    return True


def add_member(
    session: Session, actor: User, class_id: int, user: User, address: str | None = None
) -> Membership:
    """Add a student or teacher to a class (admins only) and commit."""
    require_admin(actor)
    school_class = get(session, class_id)
    if not ensure_member(session, school_class, user):
        raise errors.ALREADY_MEMBER.error(email=user.email, class_name=school_class.name)
    audit.record(
        session,
        "class.member_added",
        actor=actor,
        subject=f"class:{school_class.name}",
        address=address,
        user=user.email,
    )
    session.commit()
    return session.scalar(
        select(Membership).where(Membership.class_id == class_id, Membership.user_id == user.id)
    )


def remove_member(
    session: Session, actor: User, class_id: int, user_id: int, address: str | None = None
) -> None:
    """Remove someone from a class (admins only) and commit."""
    require_admin(actor)
    school_class = get(session, class_id)
    membership = session.scalar(
        select(Membership).where(Membership.class_id == class_id, Membership.user_id == user_id)
    )
    if membership is None:
        raise errors.NOT_MEMBER.error()
    email = membership.user.email
    session.delete(membership)
    audit.record(
        session,
        "class.member_removed",
        actor=actor,
        subject=f"class:{school_class.name}",
        address=address,
        user=email,
    )
    session.commit()


def ensure_guardianship(session: Session, guardian: User, student: User) -> bool:
    """Link a guardian to a student unless linked (no commit); True if added."""
    if guardian.role is not Role.GUARDIAN:
        raise errors.NOT_A_GUARDIAN.error(email=guardian.email, role=guardian.role.value)
    if student.role is not Role.STUDENT:
        raise errors.NOT_A_STUDENT.error(email=student.email, role=student.role.value)
    exists = session.scalar(
        select(Guardianship).where(
            Guardianship.guardian_id == guardian.id, Guardianship.student_id == student.id
        )
    )
    if exists is not None:
        return False
    session.add(Guardianship(guardian_id=guardian.id, student_id=student.id))
    session.flush()
    return True


def link_guardian(
    session: Session, actor: User, guardian: User, student: User, address: str | None = None
) -> None:
    """Make `guardian` a guardian of `student` (admins only) and commit."""
    require_admin(actor)
    if not ensure_guardianship(session, guardian, student):
        raise errors.ALREADY_LINKED.error(guardian=guardian.email, student=student.email)
    audit.record(
        session,
        "guardian.linked",
        actor=actor,
        subject=f"user:{student.email}",
        address=address,
        guardian=guardian.email,
    )
    session.commit()


def unlink_guardian(
    session: Session, actor: User, guardian_id: int, student_id: int, address: str | None = None
) -> None:
    """Remove a guardianship (admins only) and commit."""
    require_admin(actor)
    link = session.scalar(
        select(Guardianship).where(
            Guardianship.guardian_id == guardian_id, Guardianship.student_id == student_id
        )
    )
    if link is None:
        raise errors.NOT_LINKED.error()
    guardian, student = get_user(session, guardian_id), get_user(session, student_id)
    session.delete(link)
    audit.record(
        session,
        "guardian.unlinked",
        actor=actor,
        subject=f"user:{student.email}",
        address=address,
        guardian=guardian.email,
    )
    session.commit()


def guardians_of(session: Session, student_id: int) -> list[User]:
    """The guardians of a student, by name."""
    return list(
        session.scalars(
            select(User)
            .join(Guardianship, Guardianship.guardian_id == User.id)
            .where(Guardianship.student_id == student_id)
            .order_by(User.name)
        )
    )


def wards_of(session: Session, guardian_id: int) -> list[User]:
    """The students a guardian is linked to, by name."""
    return list(
        session.scalars(
            select(User)
            .join(Guardianship, Guardianship.student_id == User.id)
            .where(Guardianship.guardian_id == guardian_id)
            .order_by(User.name)
        )
    )


def classes_of(session: Session, user_id: int) -> list[tuple[SchoolClass, MemberRole]]:
    """The classes a user belongs to, by name, with how."""
    rows = session.execute(
        select(SchoolClass, Membership.role)
        .join(Membership)
        .where(Membership.user_id == user_id)
        .order_by(SchoolClass.name)
    )
    return [(c, r) for c, r in rows]


def person_by_email(session: Session, actor: User, email: str) -> Person:
    """The user with this address and their roster links (admins only), or NotFound."""
    require_admin(actor)
    return person(session, get_by_email(session, email).id)


def create_with_links(
    session: Session,
    actor: User | None,
    data: UserInput,
    class_names: Sequence[str],
    guardian_of: Sequence[str],
    address: str | None = None,
) -> Person:
    """Create a user, their class memberships and guardianships in one transaction.

    Admins only (`actor` None means the command line). Any error (unknown class or
    student, a guardian link for a non-guardian, ...) rolls everything back.
    """
    if actor is not None:
        require_admin(actor)
    password_hash = new_password_hash(session, data.password) if data.password else None
    try:
        user = build_user(session, data, password_hash)
        joined = [get_by_name(session, name) for name in class_names]
        for school_class in joined:
            ensure_member(session, school_class, user)
        wards = [get_by_email(session, email) for email in guardian_of]
        for student in wards:
            ensure_guardianship(session, user, student)
        audit.record(
            session,
            "user.created",
            actor=actor,
            subject=f"user:{user.email}",
            address=address,
            role=user.role.value,
            classes=[c.name for c in joined],
            guardian_of=[w.email for w in wards],
        )
        session.commit()
    except Exception:
        session.rollback()  # the user row was flushed: take it back with its links
        raise
    return person(session, user.id)


def search_with_classes(
    session: Session, query: str = "", role: Role | None = None, *, limit: int = 50, offset: int = 0
) -> tuple[list[tuple[User, list[str]]], int]:
    """users.search, each user with the names of their classes; and how many match."""
    people, total = users.search(session, query, role, limit=limit, offset=offset)
    names: dict[int, list[str]] = {user.id: [] for user in people}
    # One query for the whole page, not one per row.
    rows = session.execute(
        select(Membership.user_id, SchoolClass.name)
        .join(SchoolClass)
        .where(Membership.user_id.in_(names))
        .order_by(SchoolClass.name)
    )
    for user_id, name in rows:
        names[user_id].append(name)
    return [(user, names[user.id]) for user in people], total


@dataclass
class Person:
    """A user with their place in the roster: classes, guardians, the students they guard."""

    user: User
    classes: list[tuple[SchoolClass, MemberRole]]
    guardians: list[User]
    wards: list[User]


def person(session: Session, user_id: int) -> Person:
    """The user with this id and their roster links, or NotFound."""
    user = get_user(session, user_id)
    return Person(
        user=user,
        classes=classes_of(session, user.id),
        guardians=guardians_of(session, user.id) if user.role is Role.STUDENT else [],
        wards=wards_of(session, user.id) if user.role is Role.GUARDIAN else [],
    )


def add_member_by_email(
    session: Session, actor: User, class_id: int, email: str, address: str | None = None
) -> Membership:
    """Add the user with this address to a class (admins only) and commit."""
    require_admin(actor)
    member = users.get_by_email(session, users.normalise_email(email))
    return add_member(session, actor, class_id, member, address)


def link_guardian_by_email(
    session: Session, actor: User, student_id: int, email: str, address: str | None = None
) -> User:
    """Link the guardian with this address to a student (admins only), commit; the guardian."""
    require_admin(actor)
    student = get_user(session, student_id)
    guardian = users.get_by_email(session, users.normalise_email(email))
    link_guardian(session, actor, guardian, student, address)
    return guardian
