"""Every message on /ws, in one place: parsing and validating what clients send, and
building what the server sends. Server messages are encoded once per broadcast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from .. import errors
from ..db import MAX_ID
from ..errors import ErrorCode

LEGACY_PING = "ping"  # the old design's plain-text keep-alive, answered with "pong"
LEGACY_PONG = "pong"
ACK_STATES = ("delivered", "read", "acknowledged")
MAX_TABS = 100  # tabs one socket may say it serves

# Close codes (RFC 6455 and the registered 4xxx range for the app).
CLOSE_GOING_AWAY = 1001  # server shutting down: reconnect (with jitter)
CLOSE_POLICY = 1008  # auth missing or refused, flood, account disabled: do not retry blindly
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013  # too slow a reader, or too many sockets: reconnect later


class ProtocolError(ValueError):
    """A client message was refused: `code` (of a catalogue entry) is stable, `message`
    (its wording) says why."""

    def __init__(self, kind: ErrorCode, /, **values: object):
        self.code, self.message = kind.code, kind.format(**values)
        super().__init__(self.message)


@dataclass(frozen=True)
class Auth:
    token: str


@dataclass(frozen=True)
class Resume:
    last_id: int | None


@dataclass(frozen=True)
class Ack:
    id: int
    state: str


@dataclass(frozen=True)
class Ping:
    legacy: bool = False  # True for the plain-text "ping"


@dataclass(frozen=True)
class Tabs:
    """A leader tab serves this many tabs of its browser over its one socket."""

    count: int


ClientMessage = Auth | Resume | Ack | Ping | Tabs


def _int_field(payload: dict, name: str, *, optional: bool = False) -> int | None:
    value = payload.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise ProtocolError(errors.NOT_AN_ID, field=name, max=MAX_ID)
    return value


def parse_client(raw: str | bytes) -> ClientMessage:
    """Turn one frame from a client into a message, or raise ProtocolError."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            raise ProtocolError(errors.NOT_UTF8_JSON) from None
    if raw.strip() == LEGACY_PING:
        return Ping(legacy=True)
    try:
        payload = json.loads(raw)
    except ValueError:
        raise ProtocolError(errors.NOT_JSON) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise ProtocolError(errors.INVALID_MESSAGE)
    kind = payload["type"]
    if kind == "ping":
        return Ping()
    if kind == "auth":
        token = payload.get("token")
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise ProtocolError(errors.BAD_AUTH_TOKEN)
        return Auth(token)
    if kind == "resume":
        return Resume(_int_field(payload, "last_id", optional=True))
    if kind == "tabs":
        count = payload.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_TABS:
            raise ProtocolError(errors.BAD_TAB_COUNT, max=MAX_TABS)
        return Tabs(count)
    if kind == "ack":
        state = payload.get("state")
        if state not in ACK_STATES:
            raise ProtocolError(errors.BAD_ACK_STATE, states=ACK_STATES)
        return Ack(_int_field(payload, "id"), state)
    raise ProtocolError(errors.UNKNOWN_TYPE, type=kind)


def encode(message: dict) -> str:
    """Compact JSON, the one encoding used on the wire."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def hello(user_id: int, name: str, server_time: datetime, epoch: str) -> dict:
    return {
        "type": "hello",
        "user": {"id": user_id, "name": name},
        "server_time": _iso(server_time),
        "epoch": epoch,
    }


def notification(n, author_name: str | None) -> dict:
    """The `notification` message for a Notification row (or anything shaped like one)."""
    return {
        "type": "notification",
        "id": n.id,
        "title": n.title,
        "body_html": n.body_html,
        "priority": str(n.priority),
        "require_ack": bool(n.require_ack),
        "created_at": _iso(n.created_at),
        "expires_at": _iso(n.expires_at),
        "link": n.link,
        "author": author_name,
    }


def receipt(notification_id: int, state: str) -> dict:
    """This user read or confirmed an announcement (in some tab): the others drop it."""
    return {"type": "receipt", "id": notification_id, "state": state}


def pong() -> dict:
    return {"type": "pong"}


def error(kind: ErrorCode | str, message: str = "", /, **values: object) -> dict:
    """The `error` message for a catalogue entry, in its wording
    (`error(errors.UNKNOWN_NOTIFICATION, id=5)`), or for a refusal's code and message as
    they are (`error(exc.code, exc.message)`)."""
    if isinstance(kind, ErrorCode):
        return {"type": "error", "code": kind.code, "message": kind.format(**values)}
    return {"type": "error", "code": kind, "message": message}
