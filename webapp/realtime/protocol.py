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
from ..markup import plain_text

LEGACY_PING = "ping"  # the old design's plain-text keep-alive, answered with "pong" on /ws
LEGACY_PONG = "pong"
ACK_STATES = ("delivered", "read", "acknowledged")
ANSWERS = ("safe", "help")  # an emergency's roll call
MAX_ANSWER_TEXT = 280
MAX_TABS = 100  # tabs one socket may say it serves
MAX_OPEN = 100  # alerts a resuming tab may say it still shows

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
    # (id, revision) of the alerts the tab still shows: the server says which of them
    # changed (edited, withdrawn, expired, all-clear) while it was away.
    open: tuple[tuple[int, int], ...] = ()


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


@dataclass(frozen=True)
class Answer:
    """A recipient's roll-call answer to an emergency."""

    id: int
    status: str  # one of ANSWERS
    text: str | None


ClientMessage = Auth | Resume | Ack | Ping | Tabs | Answer


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
        return Resume(_int_field(payload, "last_id", optional=True), _open_alerts(payload))
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
    if kind == "answer":
        status = payload.get("status")
        if status not in ANSWERS:
            raise ProtocolError(errors.BAD_ANSWER, answers=ANSWERS)
        text = payload.get("text")
        if text is not None and not isinstance(text, str):
            raise ProtocolError(errors.BAD_ANSWER_TEXT, max=MAX_ANSWER_TEXT)
        text = " ".join((text or "").split()) or None
        if text is not None and len(text) > MAX_ANSWER_TEXT:
            raise ProtocolError(errors.BAD_ANSWER_TEXT, max=MAX_ANSWER_TEXT)
        return Answer(_int_field(payload, "id"), status, text)
    raise ProtocolError(errors.UNKNOWN_TYPE, type=kind)


def _open_alerts(payload: dict) -> tuple[tuple[int, int], ...]:
    """`open`: [[id, revision], ...], at most MAX_OPEN (optional)."""
    value = payload.get("open")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_OPEN:
        raise ProtocolError(errors.BAD_OPEN_ALERTS, max=MAX_OPEN)
    found = []
    for item in value:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in item)
            or not 0 < item[0] <= MAX_ID
            or not 0 < item[1] <= MAX_ID
        ):
            raise ProtocolError(errors.BAD_OPEN_ALERTS, max=MAX_OPEN)
        found.append((item[0], item[1]))
    return tuple(found)


def encode(message: dict) -> str:
    """Compact JSON, the one encoding used on the wire."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def hello(
    user_id: int, name: str, server_time: datetime, epoch: str, i18n: dict | None = None
) -> dict:
    """The first message of a recipient's socket; `i18n` (webapp/i18n.client_i18n) adds
    `locale`, `time_zone` and, but for English, the client's `strings`."""
    message = {
        "type": "hello",
        "user": {"id": user_id, "name": name},
        "server_time": _iso(server_time),
        "epoch": epoch,
    }
    return message | i18n if i18n else message


def notification(n, author_name: str | None) -> dict:
    """The `notification` message for a Notification row (or anything shaped like one):
    its current revision."""
    return {
        "type": "notification",
        "id": n.id,
        "revision": n.revision,
        "title": n.title,
        "body_html": n.body_html,
        "priority": str(n.priority),
        "require_ack": bool(n.require_ack),
        "confirm_by": _iso(n.confirm_by),
        "drill": bool(n.drill),
        "created_at": _iso(n.sent_at or n.created_at),
        "edited_at": _iso(n.edited_at),
        "expires_at": _iso(n.expires_at),
        "link": n.link,
        "author": author_name,
    }


def legacy_notification(message: dict) -> dict:
    """The old design's wire form of a `notification` message, for its clients on
    /api/websocket/notifications (realtime/legacy.py): they show every message they get
    as a popup of `title` and `body`, so `body` is the plain text of `body_html` (tags
    dropped, entities decoded, whitespace collapsed) and `body_html` is left out; the
    other fields are kept as they are."""
    legacy = {key: value for key, value in message.items() if key != "body_html"}
    legacy["body"] = plain_text(message["body_html"])
    return legacy


def update(n, author_name: str | None, *, reconfirm: bool = False) -> dict:
    """An announcement was edited: tabs showing it replace it in place (by id, when
    `revision` is newer than theirs); `reconfirm`: ask again for a confirmation."""
    return {**notification(n, author_name), "type": "update", "reconfirm": reconfirm}


def reminder(n, author_name: str | None) -> dict:
    """A reminder to confirm: shown again as a fresh alert, even if dismissed."""
    return {**notification(n, author_name), "reminder": True}


def retract(notification_id: int) -> dict:
    """Withdrawn: tabs remove it at once."""
    return {"type": "retract", "id": notification_id}


def expire(notification_id: int) -> dict:
    """Expired: tabs drop it."""
    return {"type": "expire", "id": notification_id}


def all_clear(notification_id: int, message: str, drill: bool = False) -> dict:
    """An emergency is over: its overlay turns into this message."""
    return {"type": "all_clear", "id": notification_id, "message": message, "drill": drill}


def change(kind: str, row) -> dict:
    """The message telling a tab of a change to an alert it shows (see
    services/replay.changed_since_shown): row carries the announcement's fields."""
    if kind == "update":
        return update(row, row.author)
    if kind == "all_clear":
        return all_clear(row.id, row.all_clear_message or "", bool(row.drill))
    if kind == "expire":
        return expire(row.id)
    return retract(row.id)


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
