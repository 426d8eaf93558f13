"""Receipts: a recipient's delivery moves forward, pending -> delivered -> read ->
acknowledged, and never back. A later state fills the timestamps of the earlier ones it
skipped; a time once written is never rewritten."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from .. import errors, metrics
from ..db import utcnow
from ..models import Channel, Delivery, DeliveryState

_deliveries = Delivery.__table__
# The timestamp column each state sets, in order.
STATE_COLUMNS = {
    DeliveryState.DELIVERED: "delivered_at",
    DeliveryState.READ: "read_at",
    DeliveryState.ACKNOWLEDGED: "acknowledged_at",
}


@dataclass(frozen=True)
class Receipt:
    """One recipient's delivery of one announcement reached `state` at `at`, reported
    through `channel` (kept on the delivery if it is the first to reach them)."""

    user_id: int
    notification_id: int
    state: DeliveryState
    at: datetime
    channel: Channel = Channel.TAB


def is_recipient(session: Session, user_id: int, notification_id: int) -> bool:
    """Whether this user is one of the notification's recipients."""
    return (
        session.scalar(
            select(Delivery.id).where(
                Delivery.user_id == user_id, Delivery.notification_id == notification_id
            )
        )
        is not None
    )


def record_receipts(session: Session, receipts: Iterable[Receipt]) -> set[int]:
    """Move deliveries forward in one transaction (one executemany per state); return
    the notification ids touched. Receipts that would move backwards change nothing."""
    # By channel too, only to count what moved per channel: a batch from the tabs is one
    # channel, so this is still one executemany per state.
    by_state: dict[tuple[DeliveryState, Channel], list[dict]] = {}
    for r in receipts:
        by_state.setdefault((r.state, r.channel), []).append(
            {"n": r.notification_id, "u": r.user_id, "at": r.at, "channel": r.channel}
        )
    touched: set[int] = set()
    moved: list[tuple[Channel, DeliveryState, int]] = []
    for (state, channel), params in by_state.items():
        result = session.execute(_forward_update(state), params)
        moved.append((channel, state, result.rowcount))
        touched.update(p["n"] for p in params)
    session.commit()
    for channel, state, count in moved:
        if count > 0:  # receipts for what was already further on moved nothing
            metrics.DELIVERIES.labels(str(channel), str(state)).inc(count)
    return touched


def record_one(
    session: Session,
    user_id: int,
    notification_id: int,
    state: str,
    channel: Channel = Channel.TAB,
) -> Receipt:
    """A receipt from a page, a device or a link (not a socket): refused unless the
    user is a recipient."""
    if not is_recipient(session, user_id, notification_id):
        raise errors.NOTIFICATION_NOT_FOUND.error(id=notification_id)
    try:
        state = DeliveryState(state)
    except ValueError:
        raise errors.INVALID_STATE.error() from None
    if state is DeliveryState.PENDING:
        raise errors.INVALID_STATE.error()
    receipt = Receipt(user_id, notification_id, state, utcnow(), channel)
    record_receipts(session, [receipt])
    return receipt


def _forward_update(state: DeliveryState):
    """UPDATE ... SET state, its timestamp and any skipped ones, and the channel if it is
    the first to reach them, WHERE state is earlier."""
    earlier = [s for s in DeliveryState if s.rank < state.rank]
    values: dict = {
        "state": state,
        "channel": func.coalesce(
            _deliveries.c.channel, bindparam("channel", type_=_deliveries.c.channel.type)
        ),
    }
    for s, column in STATE_COLUMNS.items():
        if s.rank <= state.rank:
            values[column] = func.coalesce(_deliveries.c[column], bindparam("at"))
    return (
        update(_deliveries)
        .where(
            _deliveries.c.notification_id == bindparam("n"),
            _deliveries.c.user_id == bindparam("u"),
            # Not IN (...): expanding parameters cannot be used with executemany.
            or_(*(_deliveries.c.state == s for s in earlier)),
        )
        .values(**values)
    )


_SEEN_SINCE = select(
    _deliveries.c.user_id,
    _deliveries.c.notification_id,
    _deliveries.c.acknowledged_at,
).where(
    _deliveries.c.notification_id.in_(bindparam("ids", expanding=True)),
    or_(
        _deliveries.c.read_at >= bindparam("since"),
        _deliveries.c.acknowledged_at >= bindparam("since"),
    ),
)


def seen_since(
    session: Session, notification_ids: Iterable[int], since: datetime
) -> list[tuple[int, int, str]]:
    """(user, notification, "read" or "acknowledged") of these announcements' receipts
    read or confirmed at or after `since`: what another process recorded, for the
    readers' tabs here."""
    rows = session.connection().execute(
        _SEEN_SINCE, {"ids": list(notification_ids), "since": since}
    )
    return [
        (
            user_id,
            notification_id,
            (DeliveryState.ACKNOWLEDGED if acknowledged else DeliveryState.READ).value,
        )
        for user_id, notification_id, acknowledged in rows
    ]
