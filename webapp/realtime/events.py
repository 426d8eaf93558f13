"""What the broker carries between processes: one typed, frozen value per event.

On one process (the in-process broker) the values are passed through as they are; a
broker between processes puts `encode()` on the wire (compact JSON with a `type`) and
gives `decode()` what it receives, which refuses anything that is not one of these,
fully formed (`EventError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
class NotificationSent:
    """An announcement was committed: send `message` to these recipients' sockets."""

    TYPE: ClassVar[str] = "notification_sent"
    id: int
    user_ids: tuple[int, ...]
    message: dict  # protocol.notification(...); read-only by convention

    def encode(self) -> bytes:
        return _encode(
            self.TYPE, {"id": self.id, "user_ids": list(self.user_ids), "message": self.message}
        )

    @classmethod
    def from_payload(cls, payload: dict) -> NotificationSent:
        notification_id = _id(payload.get("id"), f"{cls.TYPE}.id")
        user_ids = _ids(payload.get("user_ids"), f"{cls.TYPE}.user_ids")
        message = payload.get("message")
        if not isinstance(message, dict) or message.get("type") != "notification":
            raise EventError(f"{cls.TYPE}.message must be a notification message")
        if message.get("id") != notification_id:
            raise EventError(f"{cls.TYPE}.message is not notification {notification_id}")
        return cls(notification_id, user_ids, message)


@dataclass(frozen=True, slots=True)
class ReceiptsRecorded:
    """Receipts were committed: these announcements' status changed, and each "seen"
    (user, notification, state) tells that user's other tabs to drop the alert."""

    TYPE: ClassVar[str] = "receipts_recorded"
    notification_ids: tuple[int, ...]
    seen: tuple[tuple[int, int, str], ...]

    def encode(self) -> bytes:
        return _encode(
            self.TYPE,
            {"notification_ids": list(self.notification_ids), "seen": [list(s) for s in self.seen]},
        )

    @classmethod
    def from_payload(cls, payload: dict) -> ReceiptsRecorded:
        notification_ids = _ids(payload.get("notification_ids"), f"{cls.TYPE}.notification_ids")
        seen = payload.get("seen")
        if not isinstance(seen, list):
            raise EventError(f"{cls.TYPE}.seen must be a list")
        triples = []
        for item in seen:
            if not (isinstance(item, list) and len(item) == 3 and item[2] in protocol.ACK_STATES):
                raise EventError(f"{cls.TYPE}.seen: each is [user id, notification id, state]")
            user_id, notification_id, state = item
            what = f"{cls.TYPE}.seen"
            triples.append((_id(user_id, what), _id(notification_id, what), state))
        return cls(notification_ids, tuple(triples))


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


Event = NotificationSent | ReceiptsRecorded | CloseUser
EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls for cls in (NotificationSent, ReceiptsRecorded, CloseUser)
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
