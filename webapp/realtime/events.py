"""What the broker carries between processes: one typed, frozen value per event.

Every event reaches this process's own handlers as the very value published, with
what only this process holds (an announcement's recipients and message, the receipts
just written). A broker between processes puts `encode()` on the wire: compact JSON
with a `type` that names what to load, never bodies or lists of thousands of ids; the
database is the source of truth. `decode()` refuses anything that is not one of these,
fully formed (`EventError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from ..db import MAX_ID
from . import protocol


class EventError(ValueError):
    """Bytes that are not a well-formed broker event; the message says what is wrong."""


def _encode(kind: str, fields: dict[str, Any]) -> bytes:
    return protocol.encode({"type": kind, **fields}).encode()  # compact JSON, as on /ws


def _id(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise EventError(f"{what} must be an id (1 to {MAX_ID}), got {repr(value)[:40]}")
    return value


def _ids(values: object, what: str) -> tuple[int, ...]:
    if not isinstance(values, list):
        raise EventError(f"{what} must be a list of ids")
    return tuple(_id(value, what) for value in values)


@dataclass(frozen=True, slots=True)
class Fanout:
    """What a process that committed an announcement already holds: its recipients and
    its message. Handed to this process's own hub as it is, never put on the wire."""

    user_ids: tuple[int, ...]
    message: dict  # protocol.notification(...); read-only by convention


@dataclass(frozen=True, slots=True)
class NotificationSent:
    """An announcement was committed. On the wire only its id: every other process
    reads its recipients and message from the database, once."""

    TYPE: ClassVar[str] = "notification_sent"
    id: int
    fanout: Fanout | None = field(default=None, compare=False)  # in this process only

    def encode(self) -> bytes:
        return _encode(self.TYPE, {"id": self.id})

    @classmethod
    def from_payload(cls, payload: dict) -> NotificationSent:
        return cls(_id(payload.get("id"), f"{cls.TYPE}.id"))


@dataclass(frozen=True, slots=True)
class NotificationChanged:
    """A sent announcement changed: `change` says how (CHANGES). Every process reads
    what its own sockets need from the database: the new revision, the recipients
    still to remind, or only the id (withdrawn, expired)."""

    TYPE: ClassVar[str] = "notification_changed"
    UPDATE: ClassVar[str] = "update"  # edited: a new revision
    RECONFIRM: ClassVar[str] = "reconfirm"  # edited, and confirmations start again
    RETRACT: ClassVar[str] = "retract"  # withdrawn
    EXPIRE: ClassVar[str] = "expire"  # its expiry time came
    ALL_CLEAR: ClassVar[str] = "all_clear"  # an emergency is over
    REMIND: ClassVar[str] = "remind"  # a reminder to those who have not confirmed
    CHANGES: ClassVar[tuple[str, ...]] = (UPDATE, RECONFIRM, RETRACT, EXPIRE, ALL_CLEAR, REMIND)
    id: int
    change: str
    fanout: Fanout | None = field(default=None, compare=False)  # in this process only

    def encode(self) -> bytes:
        return _encode(self.TYPE, {"id": self.id, "change": self.change})

    @classmethod
    def from_payload(cls, payload: dict) -> NotificationChanged:
        change = payload.get("change")
        if change not in cls.CHANGES:
            raise EventError(f"{cls.TYPE}.change must be one of {', '.join(cls.CHANGES)}")
        return cls(_id(payload.get("id"), f"{cls.TYPE}.id"), change)


@dataclass(frozen=True, slots=True)
class ReceiptsRecorded:
    """Receipts were committed: these announcements' status changed. Readers' other
    tabs drop what was read: this process knows which (`seen`: user, notification,
    state); another reads the receipts since `read_since` of its own sockets' users."""

    TYPE: ClassVar[str] = "receipts_recorded"
    notification_ids: tuple[int, ...]
    read_since: datetime | None = None  # the earliest read or confirmation among them
    seen: tuple[tuple[int, int, str], ...] | None = field(default=None, compare=False)

    def encode(self) -> bytes:
        since = None if self.read_since is None else self.read_since.isoformat()
        return _encode(
            self.TYPE, {"notification_ids": list(self.notification_ids), "read_since": since}
        )

    @classmethod
    def from_payload(cls, payload: dict) -> ReceiptsRecorded:
        notification_ids = _ids(payload.get("notification_ids"), f"{cls.TYPE}.notification_ids")
        since = payload.get("read_since")
        if since is not None:
            try:
                since = datetime.fromisoformat(since)
            except (TypeError, ValueError):
                raise EventError(f"{cls.TYPE}.read_since must be an ISO time or null") from None
            if since.tzinfo is None:
                raise EventError(f"{cls.TYPE}.read_since must have a time zone")
        return cls(notification_ids, since)


@dataclass(frozen=True, slots=True)
class CloseUser:
    """Close every socket of this user (account disabled), with this reason."""

    TYPE: ClassVar[str] = "close_user"
    user_id: int
    reason: str

    def encode(self) -> bytes:
        return _encode(self.TYPE, {"user_id": self.user_id, "reason": self.reason})

    @classmethod
    def from_payload(cls, payload: dict) -> CloseUser:
        reason = payload.get("reason")
        if not isinstance(reason, str):
            raise EventError(f"{cls.TYPE}.reason must be a string")
        return cls(_id(payload.get("user_id"), f"{cls.TYPE}.user_id"), reason)


@dataclass(frozen=True, slots=True)
class NotificationsDeleted:
    """Announcements were deleted for good (retention): nothing is left to read about
    them, so the event names them; tabs still showing one drop it."""

    TYPE: ClassVar[str] = "notifications_deleted"
    MAX_IDS: ClassVar[int] = 100  # retention deletes in batches smaller than this
    ids: tuple[int, ...]

    def encode(self) -> bytes:
        return _encode(self.TYPE, {"ids": list(self.ids)})

    @classmethod
    def from_payload(cls, payload: dict) -> NotificationsDeleted:
        ids = _ids(payload.get("ids"), f"{cls.TYPE}.ids")
        if not 0 < len(ids) <= cls.MAX_IDS:
            raise EventError(f"{cls.TYPE}.ids must hold 1 to {cls.MAX_IDS} ids")
        return cls(ids)


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """Process `process` changed its share of presence (in Redis): read it again."""

    TYPE: ClassVar[str] = "presence_changed"
    process: str

    def encode(self) -> bytes:
        return _encode(self.TYPE, {"process": self.process})

    @classmethod
    def from_payload(cls, payload: dict) -> PresenceChanged:
        process = payload.get("process")
        if not isinstance(process, str) or not 0 < len(process) <= 200:
            raise EventError(f"{cls.TYPE}.process must be a process name")
        return cls(process)


Event = (
    NotificationSent
    | NotificationChanged
    | ReceiptsRecorded
    | CloseUser
    | PresenceChanged
    | NotificationsDeleted
)
EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        NotificationSent,
        NotificationChanged,
        ReceiptsRecorded,
        CloseUser,
        PresenceChanged,
        NotificationsDeleted,
    )
}


def decode(raw: bytes) -> Event:
    """The event these bytes encode, or EventError (not JSON, unknown type, bad shape)."""
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise EventError("an event is UTF-8 JSON") from None
    if not isinstance(payload, dict):
        raise EventError("an event is a JSON object with a 'type'")
    kind = payload.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise EventError(f"unknown event type {kind!r}")
    return cls.from_payload(payload)
