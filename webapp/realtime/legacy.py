"""The old design's clients, as they are, on its own path:
`/api/websocket/notifications?token=<JWT>`. For them only; new clients use /ws.

Those clients decode every message they get as JSON and show it as a popup of `title`
and `body`, send the text "ping" now and then, and reconnect after a fixed 5 s without
saying what they have. So a legacy socket is a /ws session (the same admission, caps,
hub registration and replay) with another wire format and less to say:

- only announcements, each as protocol.legacy_notification (`body` in plain text); no
  `hello`, no `pong`, no `error`, no receipts echoed, no edits, withdrawals, expiries,
  reminders or all-clears (each would be a popup that makes no sense);
- a text "ping" (and anything else it sends) is taken silently; the hub's own WebSocket
  pings keep the link alive and drop a dead peer, as for every socket;
- what it is sent is recorded as `delivered` (it has no receipts of its own), so pushes
  and e-mails are not sent on top;
- on connect it gets what is still pending for its user (it has no resume).

A bad or missing token closes the socket with 1008 and the reason, as on /ws.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

from .. import errors
from ..db import session_scope
from ..services import replay as replay_service
from . import protocol
from .greenlets import in_short_greenlet
from .hub import Connection, NotificationFrame, text_frame

if TYPE_CHECKING:
    from .session import MessageBudget

PATH = "/api/websocket/notifications"
FLOOD_CLOSE_AFTER = 100  # as on /ws: refused messages before the socket is closed


class LegacyConnection(Connection):
    """A socket of the old design's client: announcements only, in its wire form."""

    __slots__ = ("on_sent",)

    def __init__(self, hub, ws, user_id: int, on_sent):
        super().__init__(hub, ws, user_id)
        self.on_sent = on_sent  # (user_id, notification_id): record `delivered`

    def deliver(self, notification_id: int, frame: bytes) -> None:
        """As Connection.deliver, with the broadcast's legacy frame (encoded once)."""
        if self.held is None and isinstance(frame, NotificationFrame):
            self.send_replayed(notification_id, frame.legacy())
        else:  # held while replay runs (and released through here), or a repeat
            super().deliver(notification_id, frame)

    def send_replayed(self, notification_id: int, frame: bytes) -> None:
        """Send a legacy notification frame once; it counts as delivered."""
        if self.has_sent(notification_id) or self.closed or self.close_after_drain:
            return
        self._mark_sent(notification_id)
        self.send_frame(frame)
        if not self.closed:
            self.on_sent(self.user_id, notification_id)

    def send_change(self, frame: bytes) -> None:
        """Edits, withdrawals, receipts, reminders: nothing the old client could show."""


def connection(runtime, ws, user_id: int) -> LegacyConnection:
    """A legacy socket of this process's hub; what it is sent is recorded as delivered."""
    receipts = runtime.receipts
    return LegacyConnection(
        runtime.hub,
        ws,
        user_id,
        lambda user_id, notification_id: receipts.add(user_id, notification_id, "delivered"),
    )


def replay(app: Flask, conn: LegacyConnection) -> None:
    """Send what this user has not received yet, oldest first, in the legacy form."""
    conn.hold()
    try:
        for notification_id, frame in in_short_greenlet(pending_frames, conn.user_id, app=app):
            conn.send_replayed(notification_id, frame)
    finally:
        conn.release()


def pending_frames(user_id: int) -> list[tuple[int, bytes]]:
    """The legacy frames of this user's pending deliveries (live ones, oldest first)."""
    with session_scope() as session:
        return [
            (row.id, text_frame(protocol.encode(protocol.legacy_notification(message))))
            for row, message in (
                (row, protocol.notification(row, author))
                for row, author in replay_service.pending_for(session, user_id)
            )
        ]


def receive_loop(conn: LegacyConnection, budget: MessageBudget) -> None:
    """Read until the socket ends. What the old client sends ("ping") needs no answer,
    and gets none: an `error` would be one more empty popup. A flood closes it (1008).
    Frames over the size limit close it with 1009 (simple-websocket), as on /ws."""
    ws, refused = conn.ws, 0
    while not conn.closed:
        ws.receive(timeout=None)
        if not budget.take():
            refused += 1
            if refused >= FLOOD_CLOSE_AFTER:
                conn.close(protocol.CLOSE_POLICY, errors.MESSAGE_FLOOD.message)
