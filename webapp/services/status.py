"""The status of an announcement, as its author and the staff who may see it watch it:
counts per state, progress, each targeted class's parts and guardian coverage, and the
recipients table (per-recipient rows, filtered and paginated)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from math import ceil

from sqlalchemy import and_, case, distinct, func, or_, select, union
from sqlalchemy.orm import Session

from .. import errors
from ..db import LIKE_ESCAPE, contains_pattern
from ..i18n import N_
from ..models import (
    Channel,
    Delivery,
    DeliveryState,
    Guardianship,
    MemberRole,
    Membership,
    Notification,
    SchoolClass,
    Target,
    TargetKind,
    User,
)
from . import audience


@dataclass(frozen=True)
class ChannelCounts:
    """How recipients were first reached (a tab, a device by push, an e-mail's link, or
    not yet), and how many pushes and e-mails went out (sent is not yet seen: a phone
    may be off)."""

    tab: int = 0
    push: int = 0
    email: int = 0
    not_yet: int = 0
    pushed: int = 0  # recipients for whom a push service accepted a push
    emailed: int = 0  # recipients the mail server accepted an e-mail for

    def as_dict(self) -> dict[str, int]:
        return {
            "tab": self.tab,
            "push": self.push,
            "email": self.email,
            "not_yet": self.not_yet,
            "pushed": self.pushed,
            "emailed": self.emailed,
        }


def counts_by_state_and_channel(
    session: Session, notification_id: int
) -> tuple[dict[str, int], ChannelCounts]:
    """How many deliveries are in each state (every state, zeros included), and the
    channel counts: one grouped query."""
    states = {s.value: 0 for s in DeliveryState}
    by_channel = {c.value: 0 for c in Channel}
    not_yet = pushed = emailed = 0
    for state, channel, n, n_pushed, n_emailed in session.execute(
        select(
            Delivery.state,
            Delivery.channel,
            func.count(),
            func.count(Delivery.pushed_at),
            func.count(Delivery.emailed_at),
        )
        .where(Delivery.notification_id == notification_id)
        .group_by(Delivery.state, Delivery.channel)
    ):
        states[DeliveryState(state).value] += n
        if channel is None:
            # Receipts from before channels were recorded came from tabs.
            if DeliveryState(state) is DeliveryState.PENDING:
                not_yet += n
            else:
                by_channel[Channel.TAB.value] += n
        else:
            by_channel[Channel(channel).value] += n
        pushed += n_pushed
        emailed += n_emailed
    return states, ChannelCounts(**by_channel, not_yet=not_yet, pushed=pushed, emailed=emailed)


# English, marked for the catalogue: pages show them translated (i18n.translated).
CHANNEL_LABELS = {
    Channel.TAB: N_("Open tab"),
    Channel.PUSH: N_("Push"),
    Channel.EMAIL: N_("E-mail"),
}


def reached_by(delivery: Delivery) -> tuple[str, str]:
    """How one recipient was reached, as (key, label): the channel that first reached
    them, else what was sent to them and not yet seen, else not yet."""
    if delivery.channel is not None:
        return delivery.channel.value, CHANNEL_LABELS[delivery.channel]
    if delivery.state is not DeliveryState.PENDING:  # recorded before channels were
        return Channel.TAB.value, CHANNEL_LABELS[Channel.TAB]
    if delivery.pushed_at is not None:
        return "push_sent", N_("Push sent")
    if delivery.emailed_at is not None:
        return "email_sent", N_("E-mail sent")
    return "not_yet", N_("Not yet")


def counts(session: Session, notification_id: int) -> dict[str, int]:
    """How many deliveries are in each state (every state present, zeros included)."""
    return counts_by_state_and_channel(session, notification_id)[0]


def rows(
    session: Session,
    notification_id: int,
    *,
    state: str | None = None,
    limit: int = 1000,
    offset: int = 0,
    below: str | None = None,
    search: str = "",
) -> list[tuple[Delivery, User]]:
    """Per-recipient deliveries with their user, by name, optionally of one state, or of
    any state before `below`, and whose name or email contains `search`."""
    stmt = (
        select(Delivery, User)
        .join(User, User.id == Delivery.user_id)
        .where(
            *_recipient_filters(
                notification_id,
                DeliveryState(state) if state else None,
                DeliveryState(below) if below else None,
                search,
            )
        )
    )
    return [
        (d, u)
        for d, u in session.execute(stmt.order_by(User.name, User.id).limit(limit).offset(offset))
    ]


# The status component: progress, per-class breakdown, guardian coverage; recipients --

RECIPIENTS_PER_PAGE = 100
UNCONFIRMED = "unconfirmed"  # recipients filter: every state below acknowledged
_READ_OR_FURTHER = (DeliveryState.READ, DeliveryState.ACKNOWLEDGED)


@dataclass(frozen=True)
class Progress:
    """How many of `total` recipients reached each state or went further."""

    total: int = 0
    received: int = 0  # delivered, read or acknowledged
    read: int = 0  # read or acknowledged
    confirmed: int = 0  # acknowledged

    @classmethod
    def of(cls, by_state: dict[DeliveryState, int]) -> Progress:
        def reached(state: DeliveryState) -> int:
            return sum(n for s, n in by_state.items() if s.rank >= state.rank)

        return cls(
            total=sum(by_state.values()),
            received=reached(DeliveryState.DELIVERED),
            read=reached(DeliveryState.READ),
            confirmed=reached(DeliveryState.ACKNOWLEDGED),
        )


@dataclass(frozen=True)
class Coverage:
    """Guardians of one class: how many (active) students have a guardian who read it."""

    students: int
    covered: int  # at least one guardian's delivery is read or acknowledged
    unreached: int  # no guardian of theirs is among the recipients


@dataclass(frozen=True)
class ClassStatus:
    """One targeted class: progress per audience part chosen, in CLASS_AUDIENCES order."""

    name: str
    parts: list[tuple[str, Progress]]
    coverage: Coverage | None  # only when guardians were chosen


@dataclass(frozen=True)
class StatusReport:
    """Everything the live status component shows."""

    counts: dict[str, int]
    progress: Progress
    classes: list[ClassStatus]
    channels: ChannelCounts


def status_report(session: Session, notification: Notification) -> StatusReport:
    """Counts per state, progress, and for each targeted class its parts' progress and
    guardian coverage. Class rows are the frozen deliveries of the class's *current*
    members. Five queries, whatever the audience size (it runs on every live push)."""
    state_counts, channels = counts_by_state_and_channel(session, notification.id)
    progress = Progress.of({DeliveryState(s): n for s, n in state_counts.items()})
    chosen = _class_targets(session, notification.id)
    if not chosen:
        return StatusReport(state_counts, progress, [], channels)
    by_part = _member_states(session, notification.id, set(chosen))
    guardian_ids = {cid for cid, (_, parts) in chosen.items() if "guardians" in parts}
    by_part.update(_guardian_states(session, notification.id, guardian_ids))
    coverage = _coverage(session, notification.id, guardian_ids)
    classes = []
    for class_id, (name, parts) in sorted(chosen.items(), key=lambda item: item[1][0]):
        classes.append(
            ClassStatus(
                name=name,
                parts=[
                    (part, Progress.of(by_part.get((class_id, part), {})))
                    for part in audience.CLASS_AUDIENCES
                    if part in parts
                ],
                coverage=(
                    coverage.get(class_id, Coverage(0, 0, 0)) if class_id in guardian_ids else None
                ),
            )
        )
    return StatusReport(state_counts, progress, classes, channels)


def _class_targets(session: Session, notification_id: int) -> dict[int, tuple[str, set[str]]]:
    """class id -> (name, audience parts chosen); a class targeted twice merges."""
    chosen: dict[int, tuple[str, set[str]]] = {}
    for class_id, name, parts in session.execute(
        select(Target.class_id, SchoolClass.name, Target.audience)
        .join(SchoolClass, SchoolClass.id == Target.class_id)
        .where(Target.notification_id == notification_id, Target.kind == TargetKind.CLASS)
    ):
        chosen.setdefault(class_id, (name, set()))[1].update(parts or ["students"])
    return chosen


_PartStates = dict[tuple[int, str], dict[DeliveryState, int]]


def _member_states(session: Session, notification_id: int, class_ids: set[int]) -> _PartStates:
    """(class id, 'students' | 'teachers') -> deliveries per state."""
    result: _PartStates = {}
    for class_id, role, state, n in session.execute(
        select(Membership.class_id, Membership.role, Delivery.state, func.count())
        .join(
            Delivery,
            and_(
                Delivery.user_id == Membership.user_id, Delivery.notification_id == notification_id
            ),
        )
        .where(Membership.class_id.in_(class_ids))
        .group_by(Membership.class_id, Membership.role, Delivery.state)
    ):
        part = "students" if MemberRole(role) is MemberRole.STUDENT else "teachers"
        result.setdefault((class_id, part), {})[DeliveryState(state)] = n
    return result


def _guardian_states(session: Session, notification_id: int, class_ids: set[int]) -> _PartStates:
    """(class id, 'guardians') -> deliveries per state of the guardians of its students
    (a guardian of two students in one class counts once)."""
    if not class_ids:
        return {}
    result: _PartStates = {}
    for class_id, state, n in session.execute(
        select(Membership.class_id, Delivery.state, func.count(distinct(Delivery.user_id)))
        .join(Guardianship, Guardianship.student_id == Membership.user_id)
        .join(
            Delivery,
            and_(
                Delivery.user_id == Guardianship.guardian_id,
                Delivery.notification_id == notification_id,
            ),
        )
        .where(Membership.class_id.in_(class_ids), Membership.role == MemberRole.STUDENT)
        .group_by(Membership.class_id, Delivery.state)
    ):
        result.setdefault((class_id, "guardians"), {})[DeliveryState(state)] = n
    return result


def _coverage(session: Session, notification_id: int, class_ids: set[int]) -> dict[int, Coverage]:
    """class id -> how many of its active students have a guardian who read it."""
    if not class_ids:
        return {}
    per_student = (
        select(
            Membership.class_id.label("class_id"),
            func.max(case((Delivery.state.in_(_READ_OR_FURTHER), 1), else_=0)).label("covered"),
            func.count(Delivery.id).label("reached"),
        )
        .join(User, User.id == Membership.user_id)
        .outerjoin(Guardianship, Guardianship.student_id == Membership.user_id)
        .outerjoin(
            Delivery,
            and_(
                Delivery.user_id == Guardianship.guardian_id,
                Delivery.notification_id == notification_id,
            ),
        )
        .where(
            Membership.class_id.in_(class_ids),
            Membership.role == MemberRole.STUDENT,
            User.active.is_(True),
        )
        .group_by(Membership.class_id, Membership.user_id)
    ).subquery()
    return {
        class_id: Coverage(students, int(covered or 0), int(unreached or 0))
        for class_id, students, covered, unreached in session.execute(
            select(
                per_student.c.class_id,
                func.count(),
                func.sum(per_student.c.covered),
                func.sum(case((per_student.c.reached == 0, 1), else_=0)),
            ).group_by(per_student.c.class_id)
        )
    }


@dataclass(frozen=True)
class RecipientsPage:
    """One page of an announcement's recipients, filtered, with their classes' names."""

    rows: list[tuple[Delivery, User, list[str]]]
    total: int
    page: int
    pages: int
    state: str  # the filter as asked: "", a state, or UNCONFIRMED
    query: str


def parse_state_filter(value: str | None) -> tuple[DeliveryState | None, DeliveryState | None]:
    """'' / 'all' -> no filter; a state -> (that state, None); 'unconfirmed' ->
    (None, ACKNOWLEDGED), i.e. every state below it."""
    value = (value or "").strip().lower()
    if value in ("", "all"):
        return None, None
    if value == UNCONFIRMED:
        return None, DeliveryState.ACKNOWLEDGED
    try:
        return DeliveryState(value), None
    except ValueError:
        raise errors.INVALID_STATE_FILTER.error() from None


def recipients_page(
    session: Session,
    notification: Notification,
    *,
    state: str = "",
    query: str = "",
    page: int = 1,
    per_page: int = RECIPIENTS_PER_PAGE,
) -> RecipientsPage:
    """Recipients by name, filtered by state and a name/email search, a page at a time
    (a page past the end shows the last one). Three queries per page."""
    only, below = parse_state_filter(state)
    query = query.strip()[:100]
    total = (
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .join(User, User.id == Delivery.user_id)
            .where(*_recipient_filters(notification.id, only, below, query))
        )
        or 0
    )
    pages = max(ceil(total / per_page), 1)
    page = min(max(page, 1), pages)
    found = rows(
        session,
        notification.id,
        state=only,
        below=below,
        search=query,
        limit=per_page,
        offset=(page - 1) * per_page,
    )
    names = _class_names(session, [user.id for _, user in found])
    return RecipientsPage(
        rows=[(d, u, names.get(u.id, [])) for d, u in found],
        total=total,
        page=page,
        pages=pages,
        state=(state or "").strip().lower(),
        query=query,
    )


def _recipient_filters(
    notification_id: int, state: DeliveryState | None, below: DeliveryState | None, search: str
) -> list:
    """WHERE clauses for rows() and its count (Delivery joined with User)."""
    where = [Delivery.notification_id == notification_id]
    if state is not None:
        where.append(Delivery.state == state)
    if below is not None:
        where.append(Delivery.state.in_([s for s in DeliveryState if s.rank < below.rank]))
    if search.strip():
        like = contains_pattern(search.strip().lower())
        where.append(
            or_(
                func.lower(User.name).like(like, escape=LIKE_ESCAPE),
                User.email.like(like, escape=LIKE_ESCAPE),
            )
        )
    return where


def class_names(session: Session, user_ids: list[int]) -> dict[int, list[str]]:
    """user id -> names of their classes (for guardians: their students' classes), for
    other read models that list people by class (services/roll_call.py)."""
    return _class_names(session, user_ids)


def _class_names(session: Session, user_ids: list[int]) -> dict[int, list[str]]:
    """user id -> names of their classes (for guardians: their students' classes)."""
    if not user_ids:
        return {}
    own = (
        select(Membership.user_id.label("user_id"), SchoolClass.name.label("name"))
        .join(SchoolClass, SchoolClass.id == Membership.class_id)
        .where(Membership.user_id.in_(user_ids))
    )
    wards = (
        select(Guardianship.guardian_id.label("user_id"), SchoolClass.name.label("name"))
        .join(
            Membership,
            and_(
                Membership.user_id == Guardianship.student_id, Membership.role == MemberRole.STUDENT
            ),
        )
        .join(SchoolClass, SchoolClass.id == Membership.class_id)
        .where(Guardianship.guardian_id.in_(user_ids))
    )
    both = union(own, wards).subquery()
    names: dict[int, list[str]] = {}
    for user_id, name in session.execute(select(both.c.user_id, both.c.name).order_by(both.c.name)):
        names.setdefault(user_id, []).append(name)
    return names


# Cells a spreadsheet would run as a formula start with one of these: such a cell is
# written with a leading apostrophe, so a name like "=HYPERLINK(...)" stays text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def unconfirmed_csv(session: Session, notification: Notification) -> str:
    """Everyone who has not confirmed, as CSV: name, e-mail, role, classes, state, when
    delivered and read (UTC), when last reminded."""
    rows = session.execute(
        select(User, Delivery)
        .join(Delivery, Delivery.user_id == User.id)
        .where(
            Delivery.notification_id == notification.id,
            Delivery.state != DeliveryState.ACKNOWLEDGED,
        )
        .order_by(User.name, User.id)
    ).all()
    classes = _class_names(session, [user.id for user, _ in rows])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["name", "email", "role", "classes", "state", "delivered_at", "read_at", "reminded_at"]
    )
    for user, delivery in rows:
        writer.writerow(
            csv_cell(value)
            for value in (
                user.name,
                user.email,
                user.role.value,
                " ".join(classes.get(user.id, [])),
                delivery.state.value,
                delivery.delivered_at and delivery.delivered_at.isoformat(),
                delivery.read_at and delivery.read_at.isoformat(),
                delivery.reminded_at and delivery.reminded_at.isoformat(),
            )
        )
    return out.getvalue()
