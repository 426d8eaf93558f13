"""This process's WebSocket connections: who is connected, and getting frames to them.

No Flask here. A connection is a simple-websocket `Server` plus what the hub needs:
a bounded outbox and, only while a socket is backed up, a writer greenlet.

Why not one greenlet and queue per socket on the common path: a greenlet switch per
socket costs more than the write itself. Instead a broadcast encodes its frame once,
writes it straight to each socket without blocking, and hands only what would block to
that connection's outbox, drained by its own writer with a deadline. A reader that stops
reading fills its (capped) kernel buffer, then its outbox, and is cut off; the others
never wait for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from typing import NamedTuple

import gevent
from wsproto.frame_protocol import FrameProtocol

from .. import metrics
from . import protocol

log = logging.getLogger(__name__)

# Server frames are unmasked and we never negotiate compression, so one encoded frame
# is valid on every socket.
_framer = FrameProtocol(client=False, extensions=[])
PING_FRAME = bytes(_framer.ping(b""))

# Why a socket ended, as schoolbell_disconnects_total counts it (a fixed set: label
# values must stay bounded): the hub's reasons for cutting one off, close() (the
# server's word: a restart, or policy), else the client's side closed it.
OUTBOX_FULL = "too slow: outbox full"
SEND_TIMED_OUT = "too slow: send timed out"
HELD_TOO_MUCH = "too much held back during replay"
CLIENT_CLOSED, SHUTDOWN, CLOSED_BY_SERVER = "client_closed", "shutdown", "closed_by_server"
ENDED_BY = {
    OUTBOX_FULL: "outbox_full",
    SEND_TIMED_OUT: "send_timeout",
    HELD_TOO_MUCH: "replay_backlog",
    "no pong": "no_pong",
    "socket error": "socket_error",
}
ENDINGS = (*ENDED_BY.values(), CLIENT_CLOSED, SHUTDOWN, CLOSED_BY_SERVER)
SLOW = frozenset({OUTBOX_FULL, SEND_TIMED_OUT, HELD_TOO_MUCH})


class Online(NamedTuple):
    """One user's presence (here, or summed over every process)."""

    sockets: int
    tabs: int
    since: float  # epoch seconds of the first socket still open

    def plus(self, other: Online) -> Online:
        """Both together (one user's presence on two processes)."""
        return Online(
            self.sockets + other.sockets, self.tabs + other.tabs, min(self.since, other.since)
        )


def ping_slice(fd: int, slices: int) -> int:
    """The heartbeat slice of a socket: its file descriptor, spread by a multiplicative
    hash (descriptors come in runs, and often all even or all odd)."""
    return ((fd * 2654435761) & 0xFFFFFFFF) * slices >> 32


def text_frame(text: str) -> bytes:
    """Encode one complete WebSocket text frame."""
    return bytes(_framer.send_data(text, fin=True))


class NotificationFrame(bytes):
    """A notification's text frame, encoded once per broadcast for every socket, that
    also knows its message: a socket of the old design (realtime/legacy.py) takes its
    own wire form of it, encoded the first time one asks and then shared. Held frames
    (during a replay) keep both, so nothing is encoded per socket."""

    message: dict
    _legacy: bytes | None

    def __new__(cls, message: dict) -> NotificationFrame:
        frame = super().__new__(cls, text_frame(protocol.encode(message)))
        frame.message, frame._legacy = message, None
        return frame

    def legacy(self) -> bytes:
        """The old design's frame of this notification (protocol.legacy_notification)."""
        if self._legacy is None:
            self._legacy = text_frame(protocol.encode(protocol.legacy_notification(self.message)))
        return self._legacy


def close_frame(code: int, reason: str) -> bytes:
    """Encode a close frame (code + reason)."""
    return bytes(_framer.close(code, reason))


class Connection:
    """One open socket of one user (a recipient's tab, or a dashboard watching topics)."""

    # Thousands live at once: no per-instance __dict__, and the outbox and topic set are
    # only created when needed (an empty deque alone is about 600 bytes).
    __slots__ = (
        "close_after_drain",
        "closed",
        "connected_at",
        "ended",
        "fd",
        "held",
        "held_bytes",
        "hub",
        "outbox",
        "outbox_bytes",
        "sent_ids",
        "sock",
        "tabs",
        "topics",
        "user_id",
        "watch_only",
        "writer",
        "ws",
    )

    def __init__(self, hub: Hub, ws, user_id: int, *, watch_only: bool = False):
        self.hub = hub
        self.ws = ws  # simple_websocket.Server; its own greenlet reads the socket
        self.sock = ws.sock
        # Its descriptor when it opened: for spreading heartbeats only. Writes ask the
        # socket each time (see send_frame).
        self.fd = self.sock.fileno()
        self.user_id = user_id
        # A dashboard socket (htmx ws extension) only watches topics: it gets no
        # notifications and does not count towards presence.
        self.watch_only = watch_only
        self.connected_at = time.time()
        self.tabs = 1  # browser tabs this socket serves (a leader tab reports the others)
        self.outbox: deque[bytes | memoryview] | None = None  # only while backed up
        self.outbox_bytes = 0
        self.writer: gevent.Greenlet | None = None
        self.closed = False
        self.close_after_drain = False
        self.ended: str | None = None  # why the server ended it (ENDINGS); None: the client
        # Notification ids sent on this socket, sorted: 4 bytes each (a set is 200 bytes
        # empty and 700 from five ids, on every one of thousands of sockets).
        self.sent_ids = array("i")
        self.held: list[tuple[int, bytes]] | None = None  # live frames held during replay
        self.held_bytes = 0
        self.topics: set[str] | None = None  # watch-only sockets: what they watch

    def __repr__(self) -> str:
        return f"<Connection user={self.user_id} fd={self.fd} queued={self.outbox_bytes}>"

    # Sending ---------------------------------------------------------------------------
    def send_frame(self, frame: bytes) -> None:
        """Write a frame now if the socket takes it, else queue it (bounded)."""
        if self.closed or self.close_after_drain:  # nothing may follow a close frame
            return
        if not self.outbox:
            # The descriptor as of now, not as of the connect: once the reader has closed
            # the socket (the peer left), its number may already belong to another
            # connection, another person's socket or an HTTP response, until this one is
            # unregistered. A closed socket says -1; no switch can happen before the write.
            fd = self.sock.fileno()
            if fd < 0:
                self._shut("closed by the peer")
                return
            try:
                written = os.write(fd, frame)
            except BlockingIOError:
                written = 0
            except OSError:
                self.abort("socket error")
                return
            if written == len(frame):
                return
            frame = memoryview(frame)[written:]
        if self.outbox_bytes + len(frame) > self.hub.max_outbox_bytes:
            self.abort(OUTBOX_FULL)
            return
        if self.outbox is None:
            self.outbox = deque()
        self.outbox.append(frame)
        self.outbox_bytes += len(frame)
        if self.writer is None:
            self.writer = gevent.spawn(self._drain)

    def send_message(self, message: dict) -> None:
        """Encode and send one protocol message to this socket only."""
        self.send_frame(text_frame(protocol.encode(message)))

    def send_text(self, text: str) -> None:
        """Send a raw text frame (the legacy "pong")."""
        self.send_frame(text_frame(text))

    # What follows an announcement (an edit, a withdrawal, a receipt from another tab):
    # the same as send_frame here, nothing for the old design's clients (legacy.py).
    send_change = send_frame

    def send_replayed(self, notification_id: int, frame: bytes) -> None:
        """Send a notification from replay unless this socket already has it."""
        if not self.has_sent(notification_id):
            self._mark_sent(notification_id)
            self.send_frame(frame)

    def deliver(self, notification_id: int, frame: bytes) -> None:
        """Send a notification once per socket; held back while replay runs."""
        ids = self.sent_ids  # a new broadcast's id is above all of them: no search
        if ids and notification_id <= ids[-1] and self.has_sent(notification_id):
            return
        if self.held is not None:
            self.held.append((notification_id, frame))
            self.held_bytes += len(frame)
            if self.held_bytes > self.hub.max_outbox_bytes:  # replay is stuck: start over
                self.abort(HELD_TOO_MUCH)
            return
        self._mark_sent(notification_id)
        self.send_frame(frame)

    def has_sent(self, notification_id: int) -> bool:
        """Whether this notification went out on this socket."""
        ids = self.sent_ids
        i = bisect_left(ids, notification_id)
        return i < len(ids) and ids[i] == notification_id

    def _mark_sent(self, notification_id: int) -> None:
        ids = self.sent_ids
        if not ids or notification_id > ids[-1]:  # the usual case: ids only grow
            ids.append(notification_id)
        else:
            ids.insert(bisect_left(ids, notification_id), notification_id)

    def _drain(self) -> None:
        """Writer: send what is queued, each chunk within the hub's send deadline."""
        try:
            while self.outbox and not self.closed:
                chunk = self.outbox[0]
                with gevent.Timeout(self.hub.send_timeout_s):
                    self.sock.sendall(chunk)
                self.outbox.popleft()
                self.outbox_bytes -= len(chunk)
            if self.close_after_drain and not self.closed:
                self._shut("closed after drain")
        except gevent.Timeout:
            self.abort(SEND_TIMED_OUT)
        except OSError:
            self.abort("socket error")
        finally:
            self.writer = None
            if not self.outbox:
                self.outbox = None

    # Holding live messages while replaying ---------------------------------------------
    def hold(self) -> None:
        """Queue live notifications aside until release(), so replay stays in order."""
        self.held, self.held_bytes = [], 0

    def release(self) -> None:
        """Send what arrived during replay, oldest first, skipping what replay sent."""
        held, self.held = self.held or [], None
        for notification_id, frame in sorted(held, key=lambda item: item[0]):
            self.deliver(notification_id, frame)

    # Closing ---------------------------------------------------------------------------
    def close(self, code: int, reason: str) -> None:
        """Close politely: the close frame goes after anything still queued."""
        if self.closed or self.close_after_drain:
            return
        self.ended = SHUTDOWN if code == protocol.CLOSE_GOING_AWAY else CLOSED_BY_SERVER
        self.send_frame(close_frame(code, reason))
        if self.closed:  # the close frame itself did not fit
            return
        if self.outbox:
            self.close_after_drain = True
        else:
            self._shut(reason)

    def abort(self, reason: str) -> None:
        """Cut the connection off at once (no close handshake); the client will resume."""
        if self.closed:
            return
        log.warning("dropping connection of user %s: %s", self.user_id, reason)
        self.ended = ENDED_BY.get(reason, CLOSED_BY_SERVER)  # even while a close() waited
        if reason in SLOW:
            metrics.SLOW_CLIENTS_CUT_OFF.inc()
        self._shut(reason)

    def _shut(self, reason: str) -> None:
        self.closed = True
        self.outbox = None
        self.outbox_bytes = 0
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        # Wake the route's receive loop so it unregisters this connection.
        self.ws.connected = False
        self.ws.event.set()
        self.hub.unregister(self)


class Hub:
    """This process's connections by user and by watched topic, and presence."""

    def __init__(
        self,
        *,
        max_outbox_bytes: int = 256 * 1024,
        send_timeout_s: float = 5.0,
        ping_interval_s: float = 25.0,
        pong_timeout_s: float = 10.0,
        yield_every: int = 1000,
        on_presence: Callable[[int], None] | None = None,
    ):
        self.max_outbox_bytes = max_outbox_bytes
        self.send_timeout_s = send_timeout_s
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = min(pong_timeout_s, ping_interval_s)
        self.yield_every = yield_every
        self.on_presence = on_presence
        # A tuple per user, replaced on change: most users have one socket, and a tuple of
        # one is 48 bytes where a set is 216 (and a broadcast iterates it without a copy).
        self.by_user: dict[int, tuple[Connection, ...]] = {}
        self.watchers: set[Connection] = set()  # watch-only sockets
        self.by_topic: dict[str, set[Connection]] = {}
        self.count = 0
        self.closed_total = 0  # sockets closed since start (the heap keeper's clock)
        self.last_broadcast = 0.0  # time.monotonic() of the last fan-out
        self.shutting_down = False
        self._heartbeat: gevent.Greenlet | None = None

    # Membership ------------------------------------------------------------------------
    def register(self, conn: Connection) -> None:
        """Add a connection; the first one of a user makes them online."""
        self.count += 1
        metrics.OPEN_SOCKETS.inc()
        if self._heartbeat is None and self.ping_interval_s:
            self._heartbeat = gevent.spawn(self._ping_forever)
        if conn.watch_only:
            self.watchers.add(conn)
            return
        conns = self.by_user.get(conn.user_id, ())
        self.by_user[conn.user_id] = (*conns, conn)
        if self.on_presence:
            self.on_presence(conn.user_id)

    def unregister(self, conn: Connection) -> None:
        """Remove a connection (idempotent); the last one of a user makes them offline."""
        if conn.watch_only:
            if conn not in self.watchers:
                return
            self.watchers.discard(conn)
            left = None
        else:
            conns = self.by_user.get(conn.user_id, ())
            if conn not in conns:
                return
            left = tuple(c for c in conns if c is not conn)
            if left:
                self.by_user[conn.user_id] = left
            else:
                del self.by_user[conn.user_id]
        conn.closed = True  # nothing is written to it again (a heartbeat round holds it)
        self.count -= 1
        metrics.OPEN_SOCKETS.dec()
        metrics.DISCONNECTS.labels(conn.ended or CLIENT_CLOSED).inc()
        self.closed_total += 1
        for topic in list(conn.topics or ()):
            self.unwatch(conn, topic)
        if left is not None and self.on_presence:
            self.on_presence(conn.user_id)

    def watch(self, conn: Connection, topic: str) -> None:
        """Send this connection the updates published on `topic`."""
        self.by_topic.setdefault(topic, set()).add(conn)
        if conn.topics is None:
            conn.topics = set()
        conn.topics.add(topic)

    def unwatch(self, conn: Connection, topic: str) -> None:
        watchers = self.by_topic.get(topic)
        if watchers is not None:
            watchers.discard(conn)
            if not watchers:
                del self.by_topic[topic]
        if conn.topics:
            conn.topics.discard(topic)

    def set_tabs(self, conn: Connection, tabs: int) -> None:
        """A leader tab reports how many tabs of its browser share its socket."""
        if tabs != conn.tabs:
            conn.tabs = tabs
            if self.on_presence and not conn.watch_only:
                self.on_presence(conn.user_id)

    def connections_of(self, user_id: int) -> int:
        return len(self.by_user.get(user_id, ()))

    def online(self, user_id: int) -> Online | None:
        """This user's sockets and tabs here, and since when; None when offline here."""
        conns = self.by_user.get(user_id)
        if not conns:
            return None
        return Online(len(conns), sum(c.tabs for c in conns), min(c.connected_at for c in conns))

    def presence(self) -> dict[int, Online]:
        """Online users here: user id -> their sockets, tabs and first connect time."""
        return {uid: self.online(uid) for uid in self.by_user}

    def watched_topics(self) -> list[str]:
        return list(self.by_topic)

    def quiet_for(self) -> float:
        """Seconds since the last broadcast began."""
        return time.monotonic() - self.last_broadcast

    # Fan-out ---------------------------------------------------------------------------
    def deliver(self, user_ids: Iterable[int], notification_id: int, message: dict) -> int:
        """Send one notification to every local socket of these users; return how many."""
        self.last_broadcast = time.monotonic()
        frame = NotificationFrame(message)  # encoded once for all sockets
        sent = 0
        for user_id in user_ids:
            conns = self.by_user.get(user_id)
            if not conns:
                continue
            for conn in conns:  # a tuple: registering meanwhile replaces it, not changes it
                conn.deliver(notification_id, frame)
                sent += 1
                if sent % self.yield_every == 0:
                    gevent.idle()  # let pages and /healthz run during a big broadcast
        return sent

    def publish(self, topic: str, text: str) -> int:
        """Send a text frame to every local watcher of `topic`; return how many."""
        watchers = self.by_topic.get(topic)
        if not watchers:
            return 0
        frame = text_frame(text)
        for conn in tuple(watchers):
            conn.send_frame(frame)
        return len(watchers)

    def send_to_users(self, user_ids: Iterable[int], message: dict) -> int:
        """Send one message (encoded once) to every local tab socket of these users,
        whatever they were sent before (an update, a withdrawal); return how many."""
        frame = text_frame(protocol.encode(message))
        sent = 0
        for user_id in user_ids:
            for conn in self.by_user.get(user_id, ()):
                conn.send_change(frame)
                sent += 1
                if sent % self.yield_every == 0:
                    gevent.idle()
        return sent

    def send_to_user(self, user_id: int, message: dict) -> None:
        """Send one protocol message to every local socket of a user."""
        conns = self.by_user.get(user_id)
        if conns:
            frame = text_frame(protocol.encode(message))
            for conn in conns:
                conn.send_change(frame)

    def forget(self, notification_ids: Iterable[int]) -> int:
        """Announcements were deleted (retention): every local socket that was sent one
        is told it expired, so its tab drops it; return how many messages went. Runs
        once a day for a batch of old ids: a socket whose oldest id sent is newer than
        all of them (nearly every one) costs one comparison."""
        ids = sorted(set(notification_ids))
        if not ids:
            return 0
        told = 0
        for n, conn in enumerate(self._all_connections(), 1):
            sent = conn.sent_ids
            if sent and sent[0] <= ids[-1]:
                for notification_id in ids:
                    if conn.has_sent(notification_id):
                        conn.send_message(protocol.expire(notification_id))
                        told += 1
            if n % self.yield_every == 0:
                gevent.idle()
        return told

    def close_user(self, user_id: int, code: int, reason: str) -> None:
        """Close every local socket of a user (account disabled, token revoked)."""
        for conn in [
            *self.by_user.get(user_id, ()),
            *(w for w in self.watchers if w.user_id == user_id),
        ]:
            conn.close(code, reason)

    def close_all(
        self, code: int = protocol.CLOSE_GOING_AWAY, reason: str = "server restarting"
    ) -> int:
        """Close every socket politely (shutdown); new ones are refused from now on."""
        self.shutting_down = True
        if self._heartbeat is not None:
            self._heartbeat.kill(block=False)
        conns = self._all_connections()
        for conn in conns:
            conn.close(code, reason)
        return len(conns)

    # Keep-alive ------------------------------------------------------------------------
    def _ping_forever(self) -> None:
        """Ping every socket once per interval, by the clock, whether 1 or 10,000 are
        open. The interval is cut into slices (one a second, at most); a socket always
        falls in the same slice (by its file descriptor), so it is pinged every interval
        exactly, and the pongs of 10,000 sockets never arrive, nor are read, all at
        once. A slice's silent sockets are dropped one pong timeout after its pings."""
        slices = max(1, round(self.ping_interval_s / min(1.0, self.ping_interval_s / 10)))
        tick = self.ping_interval_s / slices
        awaiting: deque[tuple[float, list[Connection]]] = deque()
        due: list[list[Connection]] = []
        next_tick = time.monotonic()
        while True:
            now = time.monotonic()
            while awaiting and awaiting[0][0] <= now:
                self.drop_silent(awaiting.popleft()[1])
            if not due:  # a new round: whoever is connected now, in their slices
                due = [[] for _ in range(slices)]
                for conn in self._all_connections():
                    due[ping_slice(conn.fd, slices)].append(conn)
                due.reverse()  # popped from the end: slice 0 first
            awaiting.append((now + self.pong_timeout_s, self.ping(due.pop())))
            next_tick += tick
            gevent.sleep(max(0.0, next_tick - time.monotonic()))

    def _all_connections(self) -> list[Connection]:
        return [*(c for conns in self.by_user.values() for c in conns), *self.watchers]

    def ping_all(self) -> list[Connection]:
        """Send a ping frame to every socket; return them."""
        return self.ping(self._all_connections())

    def ping(self, conns: list[Connection]) -> list[Connection]:
        """Send a ping frame to these sockets; return them."""
        for n, conn in enumerate(conns, 1):
            conn.ws.pong_received = False  # set again by simple-websocket on a pong
            conn.send_frame(PING_FRAME)
            if n % self.yield_every == 0:
                gevent.idle()
        return conns

    def drop_silent(self, pinged: list[Connection]) -> int:
        """Cut off pinged sockets that sent no pong; return how many."""
        dropped = 0
        for conn in pinged:
            if not conn.closed and not conn.ws.pong_received:
                conn.abort("no pong")
                dropped += 1
        return dropped
