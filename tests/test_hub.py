"""The hub without a server: real connected sockets (gevent socketpairs), a stand-in for
simple-websocket's Server, and a reader that parses the frames the hub writes."""

from __future__ import annotations

import json
import logging
import socket
import struct
import time

import gevent
import gevent.event
import gevent.socket
import pytest

from webapp import metrics
from webapp.realtime import hub as hub_module
from webapp.realtime import protocol
from webapp.realtime.hub import Connection, Hub

OP_TEXT, OP_CLOSE, OP_PING = 0x1, 0x8, 0x9
SMALL_BUFFER = 4096  # bytes; the kernel rounds it up a little


class FakeWs:
    """What Connection uses of a simple_websocket.Server."""

    def __init__(self, sock):
        self.sock = sock
        self.connected = True
        self.event = gevent.event.Event()
        self.pong_received = True


class Peer:
    """The client end of a connection: reads the server's (unmasked) frames."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray()
        self.eof = False

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        assert buf[0] & 0x80, "server frames are never fragmented"
        assert buf[0] & 0x70 == 0, "no extension bits (no compression)"
        assert not buf[1] & 0x80, "server frames are not masked"
        length, offset = buf[1] & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return None
            (length,), offset = struct.unpack("!H", buf[2:4]), 4
        elif length == 127:
            if len(buf) < 10:
                return None
            (length,), offset = struct.unpack("!Q", buf[2:10]), 10
        if len(buf) < offset + length:
            return None
        opcode, payload = buf[0] & 0x0F, bytes(buf[offset : offset + length])
        del buf[: offset + length]
        return opcode, payload

    def frame(self, timeout: float = 1.0) -> tuple[int, bytes]:
        """The next frame as (opcode, payload); fails if none arrives in time."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._fill(remaining):
                raise AssertionError(
                    f"no complete frame within {timeout}s "
                    f"({len(self.buffer)} bytes buffered, eof={self.eof})"
                )

    def _fill(self, timeout: float) -> bool:
        """Read what is there (waiting up to `timeout`); False on timeout or end."""
        if self.eof:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(1 << 16)
        except TimeoutError:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def message(self, timeout: float = 1.0) -> dict:
        opcode, payload = self.frame(timeout)
        assert opcode == OP_TEXT, (opcode, payload)
        return json.loads(payload)

    def text(self, timeout: float = 1.0) -> str:
        opcode, payload = self.frame(timeout)
        assert opcode == OP_TEXT, (opcode, payload)
        return payload.decode()

    def close_status(self, timeout: float = 1.0) -> tuple[int, str]:
        opcode, payload = self.frame(timeout)
        assert opcode == OP_CLOSE, (opcode, payload)
        return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    def nothing(self, wait: float = 0.05) -> bool:
        """True if no frame arrives within `wait` (letting the hub's greenlets run)."""
        gevent.sleep(wait)
        while self._fill(0.001):
            pass
        return not self.buffer

    def at_end(self, timeout: float = 1.0) -> bool:
        """True once the server has shut the connection (after any buffered frames)."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._fill(deadline - time.monotonic())
        return self.eof

    def drain(self, timeout: float = 1.0) -> int:
        """Read until the end; return how many bytes came."""
        before = len(self.buffer)
        self.at_end(timeout)
        return len(self.buffer) - before


class Harness:
    """Connections on one hub, each a real socketpair; everything closed at the end."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.sockets: list[socket.socket] = []

    def connect(
        self,
        user_id: int,
        *,
        watch_only: bool = False,
        small_buffers: bool = False,
        register: bool = True,
    ) -> tuple[Connection, Peer]:
        server, client = gevent.socket.socketpair()
        self.sockets += [server, client]
        if small_buffers:  # as the route caps it: a stalled reader shows after KBs
            server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        conn = SpiedConnection(self.hub, FakeWs(server), user_id, watch_only=watch_only)
        if register:
            self.hub.register(conn)
        return conn, Peer(client)

    def close(self) -> None:
        if self.hub._heartbeat is not None:
            self.hub._heartbeat.kill()
        for sock in self.sockets:
            sock.close()
        gevent.sleep(0)  # let writers notice and finish


@pytest.fixture
def presence_calls() -> list[int]:
    """Every on_presence call: the user whose sockets or tabs changed."""
    return []


@pytest.fixture
def presence_events() -> list[tuple[int, bool]]:
    """(user, online) each time a user comes online or goes offline."""
    return []


@pytest.fixture
def make_hub(presence_calls, presence_events):
    """make_hub(**options) -> a Harness; no heartbeat unless asked for."""
    harnesses: list[Harness] = []

    def make(**options) -> Harness:
        online: dict[int, bool] = {}

        def on_presence(user_id: int) -> None:
            presence_calls.append(user_id)
            now = hub.connections_of(user_id) > 0
            if online.get(user_id, False) != now:
                online[user_id] = now
                presence_events.append((user_id, now))

        options = {"ping_interval_s": 0, "on_presence": on_presence, **options}
        hub = Hub(**options)
        harness = Harness(hub)
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        harness.close()


@pytest.fixture
def net(make_hub) -> Harness:
    return make_hub()


def note(notification_id: int, body: str = "Body", **fields) -> dict:
    """A `notification` message as the broker carries it."""
    return {
        "type": "notification",
        "id": notification_id,
        "title": f"N{notification_id}",
        "body_html": f"<p>{body}</p>",
        **fields,
    }


class SpiedConnection(Connection):
    """A Connection with a __dict__ (the real one has __slots__), so a test can spy on it."""


def spy_on_abort(conn: Connection) -> list[tuple[str, int]]:
    """Record (reason, queued bytes) when the open connection is cut off."""
    seen: list[tuple[str, int]] = []
    original = conn.abort

    def abort(reason: str) -> None:
        if not conn.closed:
            seen.append((reason, conn.outbox_bytes))
        original(reason)

    conn.abort = abort
    return seen


def big_frame(notification_id: int) -> bytes:
    """A notification frame of about 600 bytes."""
    return hub_module.text_frame(protocol.encode(note(notification_id, "x" * 500)))


def assert_gone(hub: Hub, conn: Connection) -> None:
    """The connection is closed, unregistered and its route was woken up."""
    assert conn.closed
    assert conn not in hub.by_user.get(conn.user_id, ())
    assert conn not in hub.watchers
    assert not conn.ws.connected
    assert conn.ws.event.is_set()
    assert not conn.outbox and conn.outbox_bytes == 0


def fill_kernel_buffer(conn: Connection, notification_id: int = 1) -> int:
    """Deliver notifications until the socket stops taking them (it starts queueing);
    return the next unused id."""
    while not conn.outbox:
        conn.deliver(notification_id, big_frame(notification_id))
        notification_id += 1
        assert notification_id < 1000, "the kernel buffer never filled"
    return notification_id


# Frames ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 10, 125, 126, 1000, 65535, 65536, 70_000])
def test_text_frames_parse_with_2_4_and_10_byte_headers(net, size):
    conn, peer = net.connect(1)
    text = "é" * (size // 2) + "x" * (size % 2)
    conn.send_text(text)
    assert peer.text() == text
    header = len(hub_module.text_frame(text)) - len(text.encode())
    assert header == (2 if len(text.encode()) < 126 else 4 if len(text.encode()) < 65536 else 10)


# Fan-out ----------------------------------------------------------------------------------


def test_deliver_encodes_once_and_every_socket_of_every_recipient_gets_it(net, monkeypatch):
    encoded, framed = [], []
    real_encode, real_frame = protocol.encode, hub_module.text_frame
    monkeypatch.setattr(protocol, "encode", lambda m: encoded.append(m) or real_encode(m))
    monkeypatch.setattr(hub_module, "text_frame", lambda t: framed.append(t) or real_frame(t))
    tabs = {
        1: [net.connect(1), net.connect(1), net.connect(1)],
        2: [net.connect(2)],
        3: [net.connect(3), net.connect(3)],
    }
    message = note(7, "Grüße", author="Zoë")
    assert net.hub.deliver([1, 2, 3], 7, message) == 6
    assert len(encoded) == 1 and len(framed) == 1
    raw = []
    for conns in tabs.values():
        for _, peer in conns:
            opcode, payload = peer.frame()
            assert opcode == OP_TEXT
            raw.append(payload)
    assert len(set(raw)) == 1  # the same bytes on every socket
    assert json.loads(raw[0]) == message
    assert "Grüße".encode() in raw[0]


def test_non_recipients_and_watchers_get_nothing(net):
    _, recipient = net.connect(1)
    _, other_user = net.connect(2)
    _, watcher_of_recipient = net.connect(1, watch_only=True)
    _, watcher = net.connect(3, watch_only=True)
    assert net.hub.deliver([1, 99], 5, note(5)) == 1
    assert recipient.message()["id"] == 5
    assert other_user.nothing() and watcher_of_recipient.nothing() and watcher.nothing()


def test_deliver_sends_each_notification_once_per_socket(net):
    conns = [net.connect(1), net.connect(1)]
    net.hub.deliver([1], 5, note(5))
    net.hub.deliver([1, 1], 5, note(5))
    _, late = net.connect(1)
    net.hub.deliver([1], 5, note(5))  # a new socket has not had it yet
    net.hub.deliver([1], 6, note(6))
    for _, peer in conns:
        assert [peer.message()["id"], peer.message()["id"]] == [5, 6]
        assert peer.nothing()
    assert [late.message()["id"], late.message()["id"]] == [5, 6]
    assert late.nothing()


def test_an_older_id_arriving_late_is_sent_once_too(net):
    """Ids usually grow, but two senders' events can arrive out of order."""
    conn, peer = net.connect(1)
    for notification_id in (7, 3, 9, 3, 7, 5, 9, 5):
        net.hub.deliver([1], notification_id, note(notification_id))
    assert [peer.message()["id"] for _ in range(4)] == [7, 3, 9, 5]
    assert peer.nothing()
    assert [conn.has_sent(i) for i in (3, 4, 5, 7, 9, 10)] == [True, False, True, True, True, False]


def test_a_big_broadcast_lets_other_greenlets_run(make_hub):
    net = make_hub(yield_every=2)
    peers = [net.connect(uid)[1] for uid in range(1, 6)]
    ran = []
    gevent.spawn(ran.append, "page served")
    net.hub.deliver(range(1, 6), 1, note(1))
    assert ran == ["page served"]
    assert all(peer.message()["id"] == 1 for peer in peers)


def test_a_dead_peer_is_dropped_and_the_others_still_get_it(net, presence_events, caplog):
    dead, dead_peer = net.connect(1)
    _, alive = net.connect(2)
    dead_peer.sock.close()
    with caplog.at_level(logging.WARNING, logger="webapp.realtime.hub"):
        net.hub.deliver([1, 2], 3, note(3))
    assert_gone(net.hub, dead)
    assert "socket error" in caplog.text
    assert alive.message()["id"] == 3
    assert (1, False) in presence_events


# Replay ordering ---------------------------------------------------------------------------


def frame_of(notification_id: int) -> bytes:
    return hub_module.text_frame(protocol.encode(note(notification_id)))


def test_live_frames_wait_for_replay_and_follow_in_id_order(net):
    resuming, peer = net.connect(1)
    _, other_tab = net.connect(1)
    resuming.hold()
    for n in (9, 4, 7):  # live, arriving while the database is read
        net.hub.deliver([1], n, note(n))
    assert peer.nothing()
    assert [other_tab.message()["id"] for _ in range(3)] == [9, 4, 7]  # not held
    for n in (2, 4, 5):  # what replay found in the database
        resuming.send_replayed(n, frame_of(n))
    resuming.release()
    assert [peer.message()["id"] for _ in range(5)] == [2, 4, 5, 7, 9]
    assert peer.nothing()
    net.hub.deliver([1], 9, note(9))  # already had it: not again
    net.hub.deliver([1], 10, note(10))  # live again, not held
    assert peer.message()["id"] == 10
    assert peer.nothing()


def test_replay_never_sends_the_same_notification_twice(net):
    conn, peer = net.connect(1)
    net.hub.deliver([1], 3, note(3))
    conn.hold()
    for n in (1, 3, 3, 4):
        conn.send_replayed(n, frame_of(n))
    conn.release()
    conn.hold()  # a second resume on the same socket
    for n in (1, 3, 4, 6):
        conn.send_replayed(n, frame_of(n))
    conn.release()
    assert [peer.message()["id"] for _ in range(4)] == [3, 1, 4, 6]
    assert peer.nothing()


def test_release_without_anything_held_sends_nothing(net):
    conn, peer = net.connect(1)
    conn.hold()
    conn.release()
    assert peer.nothing()


# Backpressure ------------------------------------------------------------------------------


def test_a_reader_that_never_reads_is_cut_off_after_a_bounded_outbox(make_hub, caplog):
    net = make_hub(max_outbox_bytes=32 * 1024, send_timeout_s=5.0)
    stalled, stalled_peer = net.connect(1, small_buffers=True)
    _, healthy = net.connect(2)
    cut = spy_on_abort(stalled)
    got: list[int] = []

    def read_healthy(count: int) -> None:
        for _ in range(count):
            got.append(healthy.message(timeout=2)["id"])

    reader = gevent.spawn(read_healthy, 60)
    frame_bytes = 0
    with caplog.at_level(logging.WARNING, logger="webapp.realtime.hub"):
        for n in range(1, 61):
            message = note(n, "y" * 2000)
            frame_bytes = len(hub_module.text_frame(protocol.encode(message)))
            net.hub.deliver([1, 2], n, message)
            gevent.sleep(0)
    reader.join(timeout=3)
    assert got == list(range(1, 61))  # everyone else got every message, in order
    [(reason, queued)] = cut
    assert reason == "too slow: outbox full"
    assert 32 * 1024 - frame_bytes < queued <= 32 * 1024  # cut at the bound, not before
    assert "too slow: outbox full" in caplog.text
    assert_gone(net.hub, stalled)
    assert net.hub.connections_of(1) == 0 and net.hub.connections_of(2) == 1
    gevent.sleep(0.05)
    assert stalled.writer is None  # its writer ended too
    # The stalled client finds the end after at most its kernel buffers' worth.
    assert stalled_peer.drain() < 4 * SMALL_BUFFER + frame_bytes
    assert stalled_peer.eof


def test_a_writer_that_misses_its_deadline_cuts_the_connection(make_hub, presence_events):
    net = make_hub(max_outbox_bytes=10 * 1024 * 1024, send_timeout_s=0.2)
    stalled, _ = net.connect(1, small_buffers=True)
    _, other = net.connect(2)
    cut = spy_on_abort(stalled)
    next_id = fill_kernel_buffer(stalled)
    started = time.monotonic()
    assert stalled.writer is not None
    gevent.sleep(0.1)
    assert not stalled.closed  # still within the deadline
    while not stalled.closed and time.monotonic() - started < 2:
        gevent.sleep(0.02)
    assert 0.15 < time.monotonic() - started < 1.0
    assert [reason for reason, _ in cut] == ["too slow: send timed out"]
    assert_gone(net.hub, stalled)
    assert presence_events[-1] == (1, False)
    net.hub.deliver([1, 2], next_id, note(next_id))
    assert other.message()["id"] == next_id


def test_a_slow_reader_that_catches_up_in_time_keeps_its_connection(make_hub):
    net = make_hub(max_outbox_bytes=1024 * 1024, send_timeout_s=1.0)
    conn, peer = net.connect(1, small_buffers=True)
    cut = spy_on_abort(conn)
    last = fill_kernel_buffer(conn)
    for n in range(last, last + 20):  # well past the kernel buffer
        conn.deliver(n, big_frame(n))
    assert conn.outbox_bytes > SMALL_BUFFER
    gevent.sleep(0.1)  # a little late, but within the deadline
    ids = [peer.message()["id"] for _ in range(last + 19)]
    assert ids == list(range(1, last + 20))
    gevent.sleep(0.05)
    assert not cut and not conn.closed
    assert not conn.outbox and conn.outbox_bytes == 0 and conn.writer is None


def test_queued_frames_keep_their_order_behind_a_partial_write(make_hub):
    net = make_hub(max_outbox_bytes=1024 * 1024)
    conn, peer = net.connect(1, small_buffers=True)
    big = "z" * 3000
    for n in range(1, 16):
        conn.deliver(n, hub_module.text_frame(protocol.encode(note(n, big))))
    assert conn.outbox  # some went whole, one partly, the rest queued
    got = [peer.message()["id"] for _ in range(15)]
    assert got == list(range(1, 16))


# Closing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (protocol.CLOSE_GOING_AWAY, "server restarting"),
        (protocol.CLOSE_POLICY, "account disabled"),
        (protocol.CLOSE_TRY_AGAIN, "too many sockets"),
        (protocol.CLOSE_TOO_BIG, ""),
    ],
)
def test_close_sends_the_code_and_reason_then_ends(net, presence_events, code, reason):
    conn, peer = net.connect(1)
    conn.close(code, reason)
    assert peer.close_status() == (code, reason)
    assert peer.at_end()
    assert_gone(net.hub, conn)
    assert presence_events == [(1, True), (1, False)]


def test_a_long_close_reason_is_cut_to_fit_a_control_frame(net):
    conn, peer = net.connect(1)
    conn.close(protocol.CLOSE_POLICY, "é" * 200)
    code, reason = peer.close_status()
    assert code == protocol.CLOSE_POLICY
    assert reason == "é" * 61  # 123 bytes: 2 + 123 = 125, the control frame maximum


def test_close_twice_sends_one_close_frame(net):
    conn, peer = net.connect(1)
    conn.close(protocol.CLOSE_POLICY, "first")
    conn.close(protocol.CLOSE_GOING_AWAY, "second")
    conn.abort("third")
    assert peer.close_status() == (protocol.CLOSE_POLICY, "first")
    assert peer.drain() == 0


def test_close_goes_out_after_what_is_queued(make_hub):
    net = make_hub(max_outbox_bytes=1024 * 1024)
    conn, peer = net.connect(1, small_buffers=True)
    last = fill_kernel_buffer(conn)
    conn.deliver(last, frame_of(last))
    conn.close(protocol.CLOSE_GOING_AWAY, "server restarting")
    assert not conn.closed and conn.close_after_drain  # waits for its writer
    assert [peer.message()["id"] for _ in range(last)] == list(range(1, last + 1))
    assert peer.close_status() == (protocol.CLOSE_GOING_AWAY, "server restarting")
    assert peer.at_end()
    assert_gone(net.hub, conn)


def test_nothing_is_sent_after_close(net):
    conn, peer = net.connect(1)
    conn.close(protocol.CLOSE_POLICY, "bye")
    conn.deliver(1, frame_of(1))
    conn.send_message(protocol.pong())
    net.hub.deliver([1], 2, note(2))
    assert peer.close_status() == (protocol.CLOSE_POLICY, "bye")
    assert peer.drain() == 0


def test_close_when_even_the_close_frame_does_not_fit_aborts(make_hub):
    net = make_hub(max_outbox_bytes=2000)
    conn, peer = net.connect(1, small_buffers=True)
    cut = spy_on_abort(conn)
    fill_kernel_buffer(conn)
    room = 2000 - conn.outbox_bytes
    conn.send_text("q" * (room - 5 - 4))  # 4-byte header: 5 bytes left, too few to close
    assert not conn.closed and conn.outbox_bytes == 1995
    conn.close(protocol.CLOSE_GOING_AWAY, "server restarting")
    assert [reason for reason, _ in cut] == ["too slow: outbox full"]
    assert_gone(net.hub, conn)
    opcodes = []
    while not peer.eof:
        try:
            opcodes.append(peer.frame(timeout=0.5)[0])
        except AssertionError:  # the stream ends inside a frame that was cut off
            break
    assert peer.eof and OP_CLOSE not in opcodes


def test_close_user_closes_every_socket_of_that_user_only(net, presence_events):
    tabs = [net.connect(1), net.connect(1), net.connect(1, watch_only=True)]
    _, other = net.connect(2)
    net.hub.close_user(1, protocol.CLOSE_POLICY, "account disabled")
    for conn, peer in tabs:
        assert peer.close_status() == (protocol.CLOSE_POLICY, "account disabled")
        assert_gone(net.hub, conn)
    assert net.hub.connections_of(1) == 0
    assert other.nothing()
    assert net.hub.count == 1
    assert presence_events == [(1, True), (2, True), (1, False)]


def test_close_all_closes_every_socket_with_1001(net, presence_events):
    tabs = [net.connect(uid) for uid in (1, 1, 2, 3)]
    tabs += [net.connect(4, watch_only=True), net.connect(1, watch_only=True)]
    assert not net.hub.shutting_down
    assert net.hub.close_all() == 6
    assert net.hub.shutting_down
    for conn, peer in tabs:
        assert peer.close_status() == (1001, "server restarting")
        assert peer.at_end()
        assert_gone(net.hub, conn)
    assert net.hub.count == 0
    assert net.hub.by_user == {} and net.hub.watchers == set()
    assert sorted(e for e in presence_events if not e[1]) == [(1, False), (2, False), (3, False)]


def test_close_all_with_a_code_of_its_own(net):
    _, peer = net.connect(1)
    assert net.hub.close_all(protocol.CLOSE_TRY_AGAIN, "maintenance") == 1
    assert peer.close_status() == (protocol.CLOSE_TRY_AGAIN, "maintenance")


def test_a_socket_its_reader_closed_is_never_written_to_when_its_number_is_reused(net):
    """The peer left and simple-websocket's reader closed the socket; before the route
    unregisters it, a new connection (another person's, or an HTTP request) gets the
    same descriptor number. A broadcast or a heartbeat round must not reach it."""
    left, _ = net.connect(1)
    fd = left.fd
    left.sock.close()  # what the reader does at the end
    reused, its_peer = gevent.socket.socketpair()  # the lowest free number: the same
    net.sockets += [reused, its_peer]
    assert fd in (reused.fileno(), its_peer.fileno())
    watched = [Peer(its_peer), Peer(reused)]

    net.hub.deliver([1], 7, note(7))
    net.hub.ping([left])
    assert all(peer.nothing() for peer in watched)
    assert left.closed and net.hub.connections_of(1) == 0


def test_nothing_is_written_to_a_connection_once_unregistered(net):
    conn, peer = net.connect(1)
    net.hub.unregister(conn)
    net.hub.ping([conn])  # a heartbeat round that began while it was open
    conn.send_message({"type": "pong"})
    assert peer.nothing()


# Presence --------------------------------------------------------------------------------------


def test_presence_changes_on_a_users_first_and_last_socket(net, presence_events):
    first, _ = net.connect(1)
    second, _ = net.connect(1)
    watcher, _ = net.connect(1, watch_only=True)
    other, _ = net.connect(2)
    assert presence_events == [(1, True), (2, True)]
    assert set(net.hub.presence()) == {1, 2}
    assert net.hub.presence()[1].sockets == 2  # watch-only sockets are not presence
    net.hub.unregister(first)
    net.hub.unregister(watcher)
    assert presence_events == [(1, True), (2, True)]
    net.hub.unregister(second)
    assert presence_events == [(1, True), (2, True), (1, False)]
    net.hub.unregister(second)  # idempotent: nothing fires twice
    other.abort("test")
    assert presence_events == [(1, True), (2, True), (1, False), (2, False)]
    assert net.hub.presence() == {}
    net.connect(1)
    assert presence_events[-1] == (1, True)


def test_presence_says_since_when_a_user_is_online(net):
    before = time.time()
    first, _ = net.connect(1)
    gevent.sleep(0.01)
    net.connect(1)
    assert before <= net.hub.presence()[1].since == first.connected_at <= time.time()


def test_every_change_of_a_users_sockets_or_tabs_is_told_and_tabs_are_counted(net, presence_calls):
    first, _ = net.connect(1)
    net.connect(1)
    net.connect(1, watch_only=True)
    assert presence_calls == [1, 1]
    net.hub.set_tabs(first, 3)  # a leader tab serving three tabs of its browser
    net.hub.set_tabs(first, 3)  # no change: not told again
    assert presence_calls == [1, 1, 1]
    assert net.hub.presence()[1][:2] == (2, 4)  # two sockets, four tabs
    net.hub.unregister(first)
    assert presence_calls == [1, 1, 1, 1]
    assert net.hub.presence()[1][:2] == (1, 1)


def test_a_watcher_only_user_is_never_online(net, presence_events):
    watcher, _ = net.connect(5, watch_only=True)
    assert presence_events == [] and net.hub.presence() == {}
    assert net.hub.connections_of(5) == 0
    net.hub.unregister(watcher)
    assert presence_events == []


# Watching topics ---------------------------------------------------------------------------------


def test_watchers_get_what_is_published_on_their_topic_only(net):
    online, online_peer = net.connect(1, watch_only=True)
    status, status_peer = net.connect(1, watch_only=True)
    _, tab = net.connect(1)
    net.hub.watch(online, "online")
    net.hub.watch(status, "notification:5")
    net.hub.watch(status, "online")
    assert sorted(net.hub.watched_topics()) == ["notification:5", "online"]
    fragment = '<div id="online-panel" data-online-count="1">Grüße</div>'
    assert net.hub.publish("online", fragment) == 2
    assert online_peer.text() == fragment
    assert status_peer.text() == fragment
    assert net.hub.publish("notification:5", '<div id="delivery-status-5"></div>') == 1
    assert status_peer.text() == '<div id="delivery-status-5"></div>'
    assert online_peer.nothing()
    assert net.hub.publish("notification:6", "<div></div>") == 0
    assert tab.nothing()
    net.hub.deliver([1], 9, note(9))
    assert online_peer.nothing() and status_peer.nothing()
    assert tab.message()["id"] == 9


def test_unwatching_and_leaving_forget_the_topic(net):
    first, first_peer = net.connect(1, watch_only=True)
    second, _ = net.connect(2, watch_only=True)
    net.hub.watch(first, "online")
    net.hub.watch(first, "notification:5")
    net.hub.watch(second, "online")
    net.hub.unwatch(first, "online")
    assert net.hub.publish("online", "<p>x</p>") == 1
    assert first_peer.nothing()
    net.hub.unregister(first)
    net.hub.unregister(second)
    assert net.hub.watched_topics() == [] and net.hub.by_topic == {}


# Keep-alive ---------------------------------------------------------------------------------------


def test_ping_all_then_drop_silent_cuts_off_who_did_not_answer(net, presence_events):
    silent, silent_peer = net.connect(1)
    talker, talker_peer = net.connect(2)
    watcher, watcher_peer = net.connect(3, watch_only=True)
    pinged = net.hub.ping_all()
    assert set(pinged) == {silent, talker, watcher}
    for peer in (silent_peer, talker_peer, watcher_peer):
        assert peer.frame() == (OP_PING, b"")
    assert not any(c.ws.pong_received for c in pinged)
    talker.ws.pong_received = True  # what simple-websocket does on a pong
    assert net.hub.drop_silent(pinged) == 2
    assert_gone(net.hub, silent)
    assert_gone(net.hub, watcher)
    assert not talker.closed
    assert silent_peer.at_end() and watcher_peer.at_end()
    net.hub.deliver([1, 2], 4, note(4))
    assert talker_peer.message()["id"] == 4
    assert (1, False) in presence_events and (2, False) not in presence_events


def test_drop_silent_skips_sockets_closed_meanwhile(net):
    gone, _ = net.connect(1)
    kept, _ = net.connect(2)
    pinged = net.hub.ping_all()
    gone.close(protocol.CLOSE_GOING_AWAY, "bye")
    kept.ws.pong_received = True
    assert net.hub.drop_silent(pinged) == 0


def test_the_heartbeat_drops_a_silent_peer_and_keeps_a_talking_one(make_hub):
    net = make_hub(ping_interval_s=0.2, pong_timeout_s=0.1)
    silent, _ = net.connect(1)
    talker, talker_peer = net.connect(2)

    def answer_pings() -> None:
        while not talker.closed:
            if talker_peer.frame(timeout=2)[0] == OP_PING:
                talker.ws.pong_received = True

    answering = gevent.spawn(answer_pings)
    gevent.sleep(0.65)  # three intervals
    assert silent.closed and net.hub.connections_of(1) == 0
    assert not talker.closed and net.hub.connections_of(2) == 1
    answering.kill()


def test_the_heartbeat_spreads_its_pings_over_the_interval(make_hub):
    """10,000 pongs at once would stall the worker: each socket is pinged once per
    interval, at its own moment."""
    net = make_hub(ping_interval_s=1.0, pong_timeout_s=0.5)
    peers = [net.connect(user_id)[1] for user_id in range(1, 21)]
    start = time.monotonic()

    def first_ping(peer) -> float:
        assert peer.frame(timeout=3)[0] == OP_PING
        return time.monotonic() - start

    readers = [gevent.spawn(first_ping, peer) for peer in peers]
    gevent.joinall(readers, raise_error=True)
    times = sorted(reader.value for reader in readers)
    assert times[-1] <= 1.5  # everyone within about one interval
    assert times[-1] - times[0] >= 0.5  # but not all at once


# Counting sockets ---------------------------------------------------------------------------------


def test_counts_per_user_return_to_zero(net):
    conns = [
        net.connect(1)[0],
        net.connect(1)[0],
        net.connect(2)[0],
        net.connect(3, watch_only=True)[0],
        net.connect(4)[0],
    ]
    assert net.hub.connections_of(1) == 2 and net.hub.count == 5
    conns[0].close(protocol.CLOSE_GOING_AWAY, "bye")
    conns[1].abort("test")
    net.hub.unregister(conns[2])
    net.hub.unregister(conns[2])
    conns[3].close(protocol.CLOSE_POLICY, "bye")
    assert net.hub.connections_of(1) == 0 and net.hub.count == 1
    net.hub.unregister(conns[4])
    assert net.hub.count == 0 and net.hub.by_user == {}


def test_unregistering_an_unknown_connection_changes_nothing(net):
    net.connect(1)
    stranger, _ = net.connect(1, register=False)
    net.hub.unregister(stranger)
    assert net.hub.count == 1 and net.hub.connections_of(1) == 1


def test_nothing_follows_a_close_frame_that_waits_behind_a_backlog(make_hub):
    """RFC 6455 5.5.1: after a Close frame, no more frames. A socket that is still
    draining its outbox when closed must not queue later broadcasts, pings, published
    fragments or a second Close frame behind its Close frame."""
    net = make_hub(max_outbox_bytes=1024 * 1024)
    conn, peer = net.connect(1, small_buffers=True)
    net.hub.watch(conn, "online")
    last = fill_kernel_buffer(conn)
    net.hub.close_all()
    assert conn.close_after_drain and not conn.closed
    net.hub.deliver([1], last, note(last))  # a broadcast while shutting down
    net.hub.ping_all()
    net.hub.publish("online", "<div></div>")
    net.hub.close_user(1, protocol.CLOSE_POLICY, "account disabled")  # a second close
    frames = []
    while not peer.at_end(0.05) or peer.buffer:
        frames.append(peer.frame())
    opcodes = [opcode for opcode, _ in frames]
    assert opcodes[-1] == OP_CLOSE, opcodes[-5:]
    assert opcodes.count(OP_CLOSE) == 1, opcodes[-5:]
    assert struct.unpack("!H", frames[-1][1][:2])[0] == 1001
    assert [json.loads(p)["id"] for op, p in frames if op == OP_TEXT] == list(range(1, last))


# Metrics: each socket that ends is counted once, by why (webapp/metrics.py) ------------


def ended_counts() -> dict[str, float]:
    """schoolbell_disconnects_total by reason, and the slow clients cut off."""
    counts = {
        reason: metrics.DISCONNECTS.labels(reason)._value.get() for reason in hub_module.ENDINGS
    }
    counts["slow"] = metrics.SLOW_CLIENTS_CUT_OFF._value.get()
    return counts


def end_by_client(net: Harness, conn: Connection) -> None:
    net.hub.unregister(conn)  # what the route's `finally` does once the peer has gone


def end_by_policy(net: Harness, conn: Connection) -> None:
    conn.close(protocol.CLOSE_POLICY, "account disabled")


def end_by_shutdown(net: Harness, conn: Connection) -> None:
    net.hub.close_all()


def end_by_silence(net: Harness, conn: Connection) -> None:
    conn.ws.pong_received = False
    net.hub.drop_silent([conn])


def end_by_a_full_outbox(net: Harness, conn: Connection) -> None:
    next_id = fill_kernel_buffer(conn)
    while not conn.closed:
        conn.deliver(next_id, big_frame(next_id))
        next_id += 1


def end_by_a_backlog_during_replay(net: Harness, conn: Connection) -> None:
    conn.hold()
    for n in range(1, 10):
        conn.deliver(n, big_frame(n))


def end_by_a_dead_peer(net: Harness, conn: Connection) -> None:
    net.sockets[-1].close()  # the peer's end
    net.hub.deliver([conn.user_id], 1, note(1))


@pytest.mark.parametrize(
    ("end", "reason", "slow"),
    [
        (end_by_client, "client_closed", 0),
        (end_by_policy, "closed_by_server", 0),
        (end_by_shutdown, "shutdown", 0),
        (end_by_silence, "no_pong", 0),
        (end_by_a_full_outbox, "outbox_full", 1),
        (end_by_a_backlog_during_replay, "replay_backlog", 1),
        (end_by_a_dead_peer, "socket_error", 0),
    ],
)
def test_a_socket_that_ends_is_counted_once_by_why(make_hub, end, reason, slow):
    net = make_hub(max_outbox_bytes=4000)
    conn, _ = net.connect(7, small_buffers=True)
    sockets, before = metrics.OPEN_SOCKETS._value.get(), ended_counts()
    end(net, conn)
    gevent.sleep(0.05)
    net.hub.unregister(conn)  # the route's `finally` as well: still counted once
    after = ended_counts()
    changed = {key: after[key] - before[key] for key in after if after[key] != before[key]}
    assert changed == {reason: 1, **({"slow": 1} if slow else {})}
    assert metrics.OPEN_SOCKETS._value.get() == sockets - 1


def test_a_send_past_its_deadline_is_counted_as_too_slow(make_hub):
    net = make_hub(max_outbox_bytes=10 * 1024 * 1024, send_timeout_s=0.1)
    conn, _ = net.connect(1, small_buffers=True)
    before = ended_counts()
    fill_kernel_buffer(conn)
    wait = time.monotonic() + 2
    while not conn.closed and time.monotonic() < wait:
        gevent.sleep(0.02)
    after = ended_counts()
    assert after["send_timeout"] - before["send_timeout"] == 1
    assert after["slow"] - before["slow"] == 1
