"""History: the sent announcements a staff member may see, searched, filtered, one page
at a time, with read and confirmed counts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.orm import Session, selectinload

from ..db import LIKE_ESCAPE, contains_pattern, utcnow
from ..models import Delivery, DeliveryState, Notification, Priority, Role, SchoolClass, User
from . import notifications, visibility


@dataclass(frozen=True)
class HistoryFilters:
    """What the history list is narrowed to; empty / None means "any"."""

    text: str = ""  # in the title or the body, case-insensitive, % and _ literal
    author_id: int | None = None
    class_id: int | None = None  # announcements that targeted this class
    priority: Priority | None = None
    # Emergencies only: True drills, False real emergencies (None: both, or n/a).
    drill: bool | None = None
    sent_from: date | None = None  # inclusive, UTC
    sent_to: date | None = None  # inclusive, UTC
    stage: notifications.Stage | None = None  # as its status page says it, now
    since: datetime | None = None  # sent (not sent yet: created) at or after this


@dataclass(frozen=True)
class HistoryRow:
    """One announcement of the list with its author's name and receipt progress."""

    notification: Notification
    author_name: str | None  # None when the author's account was deleted
    read: int  # recipients who read it (confirming counts as reading)
    acknowledged: int

    @property
    def stage(self) -> notifications.Stage:
        """Scheduled, sent, withdrawn, expired, ... (services.notifications.stage)."""
        return notifications.stage(self.notification)


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
    # Counted apart, among what the other filters (all but priority) find: a school
    # reports its drills, and must not count them as real emergencies.
    emergencies: int = 0
    drills: int = 0

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def history(
    session: Session, viewer: User, filters: HistoryFilters, page: int = 1, per_page: int = 25
) -> HistoryPage:
    """The announcements `viewer` may see (the rule of services.visibility), newest
    first, filtered, one page of them with read / confirmed counts. Five queries
    whatever the page size."""
    visible = visibility.visible_to(viewer)
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
        class_stmt = class_stmt.where(SchoolClass.id.in_(visibility.taught_by(viewer.id)))
    class_options = [(i, name) for i, name in session.execute(class_stmt)]
    # An author or class the form does not offer is dropped (the returned filters say
    # so): the list never depends on a choice the viewer cannot see or make.
    if filters.author_id is not None and filters.author_id not in dict(authors):
        filters = replace(filters, author_id=None)
    if filters.class_id is not None and filters.class_id not in dict(class_options):
        filters = replace(filters, class_id=None)

    conditions = [visible, *_history_conditions(filters)]
    total, emergencies, drills = _totals(session, visible, filters)
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
        emergencies=emergencies,
        drills=drills,
        rows=rows,
        total=total,
        page=page,
        per_page=per_page,
        filters=filters,
        authors=authors,
        classes=class_options,
    )


def _history_conditions(filters: HistoryFilters) -> list:
    """The WHERE clauses of the filters that are set."""
    return _other_conditions(filters) + _priority_conditions(filters)


def _priority_conditions(filters: HistoryFilters) -> list:
    """The priority filter's clauses (with "drills" or "real emergencies" only)."""
    conditions = []
    if filters.priority is not None:
        conditions.append(Notification.priority == filters.priority)
    if filters.drill is not None:
        conditions.append(Notification.drill.is_(filters.drill))
    return conditions


def _other_conditions(filters: HistoryFilters) -> list:
    """The clauses of every filter but the priority."""
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
        conditions.append(visibility.targets_class([filters.class_id]))
    if filters.sent_from is not None:
        conditions.append(
            Notification.created_at >= datetime.combine(filters.sent_from, time.min, UTC)
        )
    if filters.sent_to is not None and filters.sent_to < date.max:
        next_day = filters.sent_to + timedelta(days=1)
        conditions.append(Notification.created_at < datetime.combine(next_day, time.min, UTC))
    if filters.stage is not None:
        conditions.append(notifications.in_stage(filters.stage, utcnow()))
    if filters.since is not None:
        conditions.append(
            func.coalesce(Notification.sent_at, Notification.created_at) >= filters.since
        )
    return conditions


@dataclass(frozen=True)
class Listing:
    """One page of the list scripts read (API, CLI): newest first, and where the next
    page starts (None: this is the last)."""

    rows: list[HistoryRow]
    next_before: int | None  # the cursor: ids below this one


MAX_LIST_LIMIT = 200


def listing(
    session: Session,
    viewer: User,
    filters: HistoryFilters,
    *,
    before: int | None = None,
    limit: int = 50,
) -> Listing:
    """The announcements `viewer` may see (services.visibility), filtered as the history
    is, newest first (by id, so a page never shifts when one is sent meanwhile), the
    `limit` of them with ids below `before`, with read / confirmed counts. Three queries
    whatever the page size (authors loaded with the page)."""
    limit = min(max(limit, 1), MAX_LIST_LIMIT)
    conditions = [visibility.visible_to(viewer), *_history_conditions(filters)]
    if before is not None:
        conditions.append(Notification.id < before)
    found = list(
        session.execute(
            select(Notification, User.name)
            .outerjoin(User, User.id == Notification.author_id)
            .where(*conditions)
            .options(selectinload(Notification.author))
            .order_by(Notification.id.desc())
            .limit(limit + 1)
        )
    )
    more, found = len(found) > limit, found[:limit]
    progress = _progress(session, [n.id for n, _ in found])
    rows = [HistoryRow(n, name, *progress.get(n.id, (0, 0))) for n, name in found]
    return Listing(rows, rows[-1].notification.id if more else None)


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


def _totals(session: Session, visible, filters: HistoryFilters) -> tuple[int, int, int]:
    """How many match the filters; and, among what all filters but priority and drill
    find, how many real emergencies and how many drills: one query."""
    emergency = Notification.priority == Priority.EMERGENCY
    total, emergencies, drills = session.execute(
        select(
            func.count().filter(and_(true(), *_priority_conditions(filters))),
            func.count().filter(emergency, Notification.drill.is_(False)),
            func.count().filter(emergency, Notification.drill.is_(True)),
        ).where(visible, *_other_conditions(filters))
    ).one()
    return total or 0, emergencies or 0, drills or 0
