"""Deliveries: what each recipient still has to get (replay), their receipts, and the
status of an announcement (counts per state, per-recipient rows).

Receipt states only move forward: pending -> delivered -> read -> acknowledged. A later
state fills the timestamps of the earlier ones it skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from ..db import utcnow
from ..errors import NotFound, ValidationFailed
from ..models import Delivery, DeliveryState, Notification, Role, Target, TargetKind, User
from . import audience

REPLAY_LIMIT = 500
_deliveries = Delivery.__table__
# The timestamp column each state sets, in order.
STATE_COLUMNS = {
    DeliveryState.DELIVERED: "delivered_at",
    DeliveryState.READ: "read_at",
    DeliveryState.ACKNOWLEDGED: "acknowledged_at",
}


@dataclass(frozen=True)
class Receipt:
    user_id: int
    notification_id: int
    state: DeliveryState
    at: datetime


def replay_for(session: Session, user_id: int, last_id: int | None,
               now: datetime | None = None) -> list[tuple[Notification, str | None]]:
    """What a (re)connecting client must get, oldest first, with author names: anything
    still pending, anything newer than `last_id`, and anything awaiting confirmation;
    never expired or retracted ones."""
    now = now or utcnow()
    author = aliased(User)
    wanted = [Delivery.state == DeliveryState.PENDING,
              and_(Notification.require_ack.is_(True),
                   Delivery.state != DeliveryState.ACKNOWLEDGED)]
    if last_id is not None:
        wanted.append(Notification.id > last_id)
    rows = session.execute(
        select(Notification, author.name)
        .join(Delivery, Delivery.notification_id == Notification.id)
        .outerjoin(author, author.id == Notification.author_id)
        .where(Delivery.user_id == user_id, Notification.retracted_at.is_(None),
               or_(Notification.expires_at.is_(None), Notification.expires_at > now),
               or_(*wanted))
        .order_by(Notification.id).limit(REPLAY_LIMIT))
    return [(n, name) for n, name in rows]


def is_recipient(session: Session, user_id: int, notification_id: int) -> bool:
    """Whether this user is one of the notification's recipients."""
    return session.scalar(select(Delivery.id).where(
        Delivery.user_id == user_id, Delivery.notification_id == notification_id)) is not None


def record_receipts(session: Session, receipts: Iterable[Receipt]) -> set[int]:
    """Move deliveries forward in one transaction (one executemany per state); return
    the notification ids touched. Receipts that would move backwards change nothing."""
    by_state: dict[DeliveryState, list[dict]] = {}
    for r in receipts:
        by_state.setdefault(r.state, []).append(
            {"n": r.notification_id, "u": r.user_id, "at": r.at})
    touched: set[int] = set()
    for state, params in by_state.items():
        session.execute(_forward_update(state), params)
        touched.update(p["n"] for p in params)
    session.commit()
    return touched


def record_one(session: Session, user_id: int, notification_id: int, state: str) -> None:
    """A receipt from a page (not a socket): refused unless the user is a recipient."""
    if not is_recipient(session, user_id, notification_id):
        raise NotFound(f"No announcement with id {notification_id}.",
                       code="notification_not_found")
    try:
        state = DeliveryState(state)
    except ValueError:
        raise ValidationFailed("state must be delivered, read or acknowledged.",
                               code="invalid_state") from None
    if state is DeliveryState.PENDING:
        raise ValidationFailed("state must be delivered, read or acknowledged.",
                               code="invalid_state")
    record_receipts(session, [Receipt(user_id, notification_id, state, utcnow())])


def _forward_update(state: DeliveryState):
    """UPDATE ... SET state, its timestamp and any skipped ones WHERE state is earlier."""
    earlier = [s for s in DeliveryState if s.rank < state.rank]
    values: dict = {"state": state}
    for s, column in STATE_COLUMNS.items():
        if s.rank <= state.rank:
            values[column] = func.coalesce(_deliveries.c[column], bindparam("at"))
    return (update(_deliveries)
            .where(_deliveries.c.notification_id == bindparam("n"),
                   _deliveries.c.user_id == bindparam("u"),
                   # Not IN (...): expanding parameters cannot be used with executemany.
                   or_(*(_deliveries.c.state == s for s in earlier)))
            .values(**values))


def can_view_status(session: Session, actor: User, notification: Notification) -> bool:
    """The author, admins, and teachers of a targeted class see an announcement's status."""
    if actor.role is Role.ADMIN or notification.author_id == actor.id:
        return True
    if actor.role is not Role.TEACHER:
        return False
    class_ids = {t.class_id for t in session.scalars(select(Target).where(
        Target.notification_id == notification.id, Target.kind == TargetKind.CLASS))}
    return bool(class_ids & audience.taught_class_ids(session, actor.id))


def viewable(session: Session, actor: User, notification_id: int) -> Notification:
    """The notification if `actor` may see its status; 404 otherwise, so guessing ids
    does not even confirm that an announcement exists."""
    notification = session.get(Notification, notification_id)
    if notification is None or not can_view_status(session, actor, notification):
        raise NotFound(f"No announcement with id {notification_id}.",
                       code="notification_not_found")
    return notification


def counts(session: Session, notification_id: int) -> dict[str, int]:
    """How many deliveries are in each state (every state present, zeros included)."""
    result = {s.value: 0 for s in DeliveryState}
    for state, n in session.execute(
            select(Delivery.state, func.count()).where(
                Delivery.notification_id == notification_id).group_by(Delivery.state)):
        result[DeliveryState(state).value] = n
    return result


def rows(session: Session, notification_id: int, *, state: str | None = None,
         limit: int = 1000, offset: int = 0) -> list[tuple[Delivery, User]]:
    """Per-recipient deliveries with their user, by name, optionally of one state."""
    stmt = (select(Delivery, User).join(User, User.id == Delivery.user_id)
            .where(Delivery.notification_id == notification_id))
    if state:
        stmt = stmt.where(Delivery.state == DeliveryState(state))
    return [(d, u) for d, u in session.execute(
        stmt.order_by(User.name, User.id).limit(limit).offset(offset))]


def inbox(session: Session, user_id: int, *, since: int | None = None, limit: int = 100
          ) -> list[tuple[Notification, Delivery, str | None]]:
    """A user's announcements, newest first (or those after `since`, oldest first)."""
    author = aliased(User)
    stmt = (select(Notification, Delivery, author.name)
            .join(Delivery, Delivery.notification_id == Notification.id)
            .outerjoin(author, author.id == Notification.author_id)
            .where(Delivery.user_id == user_id, Notification.retracted_at.is_(None)))
    if since is not None:
        stmt = stmt.where(Notification.id > since).order_by(Notification.id)
    else:
        stmt = stmt.order_by(Notification.id.desc())
    return [(n, d, a) for n, d, a in session.execute(stmt.limit(limit))]


def inbox_item(session: Session, user_id: int, notification_id: int
               ) -> tuple[Notification, Delivery, str | None]:
    """One announcement of a user's inbox, or NotFound."""
    author = aliased(User)
    row = session.execute(
        select(Notification, Delivery, author.name)
        .join(Delivery, Delivery.notification_id == Notification.id)
        .outerjoin(author, author.id == Notification.author_id)
        .where(Delivery.user_id == user_id, Notification.id == notification_id)).first()
    if row is None:
        raise NotFound(f"No announcement with id {notification_id}.",
                       code="notification_not_found")
    return row[0], row[1], row[2]
