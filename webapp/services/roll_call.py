"""Emergency roll call: each recipient of an emergency answers "I'm safe" or "I need
help" (with an optional short text), from any tab; the latest answer counts. An answer
also counts as reading the alert."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..db import utcnow
from ..i18n import N_
from ..models import Answer, Delivery, Notification, Priority, User
from . import status


def record_answer(
    session: Session,
    user_id: int,
    notification_id: int,
    answer: Answer,
    text: str | None,
    now: datetime | None = None,
) -> bool:
    """Keep this recipient's answer to an emergency that is not over yet, and commit;
    False (nothing written) when they got no such emergency."""
    emergency = (
        select(Notification.id)
        .where(
            Notification.id == notification_id,
            Notification.priority == Priority.EMERGENCY,
            Notification.retracted_at.is_(None),
            Notification.all_clear_at.is_(None),
        )
        .scalar_subquery()
    )
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.user_id == user_id,
            Delivery.notification_id == notification_id,
            Delivery.notification_id == emergency,
        )
        .values(answer=answer, answer_text=text, answered_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(result.rowcount)


# The roll call as staff watch it (read model) -------------------------------------------
NO_CLASS = N_("No class")  # a group's name; pages show it translated
# Who is listed first: those who need help, then those not heard from, then the safe.
_ORDER = {Answer.HELP: 0, None: 1, Answer.SAFE: 2}


@dataclass(frozen=True)
class Person:
    """One recipient's answer (None: not yet), with their text and when."""

    user_id: int
    name: str
    role: str
    answer: Answer | None
    text: str | None
    answered_at: datetime | None
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Counts:
    """How many said safe, need help, or have not answered yet."""

    safe: int = 0
    help: int = 0
    no_answer: int = 0

    @property
    def total(self) -> int:
        return self.safe + self.help + self.no_answer

    def as_dict(self) -> dict[str, int]:
        return {"safe": self.safe, "help": self.help, "no_answer": self.no_answer}


@dataclass(frozen=True)
class Group:
    """The people of one class (for guardians: their students' classes), in roll-call
    order, and the class's own counts."""

    name: str
    people: tuple[Person, ...]
    counts: Counts


@dataclass(frozen=True)
class RollCall:
    """An emergency's roll call: the counts, everyone who needs help (first, whatever
    their class), and everyone by class."""

    counts: Counts
    need_help: tuple[Person, ...]
    groups: tuple[Group, ...]


def _counts(people) -> Counts:
    answers = [p.answer for p in people]
    return Counts(
        safe=answers.count(Answer.SAFE),
        help=answers.count(Answer.HELP),
        no_answer=answers.count(None),
    )


def _roll_order(person: Person):
    """Help first (the latest call for help on top), then not answered, then safe; by
    name within each."""
    latest_first = -person.answered_at.timestamp() if person.answered_at else 0
    if person.answer is not Answer.HELP:
        latest_first = 0
    return (_ORDER[person.answer], latest_first, person.name.lower(), person.user_id)


def counts(session: Session, notification_id: int) -> Counts:
    """The roll call's counts alone: one grouped query."""
    found = dict(
        session.execute(
            select(Delivery.answer, func.count())
            .where(Delivery.notification_id == notification_id)
            .group_by(Delivery.answer)
        ).all()
    )
    return Counts(
        safe=found.get(Answer.SAFE, 0),
        help=found.get(Answer.HELP, 0),
        no_answer=found.get(None, 0),
    )


def roll_call(session: Session, notification: Notification) -> RollCall | None:
    """The roll call of an emergency (None for any other announcement): two queries.
    Who may see it is the status page's rule (visibility.viewable), checked by the
    caller; a person in two classes is listed in both, and counted once."""
    if notification.priority is not Priority.EMERGENCY:
        return None
    rows = session.execute(
        select(
            Delivery.user_id,
            User.name,
            User.role,
            Delivery.answer,
            Delivery.answer_text,
            Delivery.answered_at,
        )
        .join(User, User.id == Delivery.user_id)
        .where(Delivery.notification_id == notification.id)
    ).all()
    classes = status.class_names(session, [row.user_id for row in rows])
    people = sorted(
        (
            Person(
                user_id=row.user_id,
                name=row.name,
                role=row.role.value,
                answer=row.answer,
                text=row.answer_text,
                answered_at=row.answered_at,
                classes=tuple(classes.get(row.user_id, ())),
            )
            for row in rows
        ),
        key=_roll_order,
    )
    by_class: dict[str, list[Person]] = {}
    for person in people:
        for name in person.classes or (NO_CLASS,):
            by_class.setdefault(name, []).append(person)
    groups = [Group(name, tuple(members), _counts(members)) for name, members in by_class.items()]
    # Classes with someone who needs help come first; "No class" last among equals.
    groups.sort(key=lambda g: (g.counts.help == 0, g.name == NO_CLASS, g.name.lower()))
    return RollCall(
        counts=_counts(people),
        need_help=tuple(p for p in people if p.answer is Answer.HELP),
        groups=tuple(groups),
    )
