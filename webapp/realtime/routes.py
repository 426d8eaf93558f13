"""The /ws endpoint: admit -> handshake -> authenticate -> register -> hello -> replay ->
receive loop -> `finally` unregister.

It is WSGI middleware in front of Flask, on simple-websocket (flask-sock's engine), not a
flask-sock view: a view runs inside Flask's request context, and a socket's view runs as
long as the socket, so every idle socket kept a whole request alive (Request, session,
URL adapter, the extensions' per-request state, the frames of Flask's dispatch): about
3.5 KB a socket, measured. Here the checks that must refuse before the 101 response
(Origin, capacity, who it is) run in a request context that is closed before the
handshake; the socket then lives without any Flask context, and what needs one (database
work, templates) runs in a short-lived greenlet that has one (`shallow`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import socket
import sys
import time
from dataclasses import dataclass

import gevent
from flask import Flask, Response, current_app, make_response, request
from flask_login import current_user
from simple_websocket import ConnectionClosed, Server
from sqlalchemy import bindparam, select

from .. import tokens
from ..db import session_scope, utcnow
from ..errors import DomainError, error_response
from ..extensions import client_address
from ..models import User
from ..services import receipts as receipts_service
from ..services import replay as replay_service
from . import protocol, topics
from .hub import Connection, text_frame
from .live import live

log = logging.getLogger(__name__)
PATH = "/ws"
FLOOD_CLOSE_AFTER = 100  # refused messages before the socket is closed


@dataclass(frozen=True, slots=True)
class SocketUser:
    """What the socket needs of its user, read once (no ORM object held open)."""

    id: int
    name: str
    is_staff: bool

    @classmethod
    def of(cls, user) -> SocketUser:
        """From a User, or a row with its id, name and role."""
        return cls(user.id, user.name, user.role.is_staff)


def origin_allowed(origin: str) -> bool:
    """Same origin as the app, or listed in SCHOOLBELL_ALLOWED_ORIGINS."""
    origin = origin.strip().rstrip("/").lower()
    own = request.host_url.rstrip("/").lower()
    return origin == own or origin in current_app.config["ALLOWED_ORIGINS"]


# Built once: thousands of sockets reconnecting at once each run it.
_SOCKET_USER = select(User.id, User.name, User.role, User.active).where(User.id == bindparam("id"))


def shallow(function, *args, app: Flask | None = None):
    """Run `function` in a short-lived greenlet of its own and return what it returns
    (or raise what it raises); in an app context of `app` when given (a socket's own
    greenlet has none).

    A socket's greenlet lives as long as the socket, and keeps the frame-stack memory its
    deepest call ever touched (CPython 3.11 gives each greenlet its own 16 KB data stack
    chunk): SQLAlchemy queries run on it would cost every idle socket several KB."""
    outcome: list = []

    def run() -> None:
        try:
            if app is None:
                outcome.append((True, function(*args)))
            else:
                with app.app_context():
                    outcome.append((True, function(*args)))
        except BaseException as exc:  # handed to the caller, not gevent's error printer
            outcome.append((False, exc))

    gevent.spawn(contextvars.copy_context().run, run).join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def user_from_token(token: str) -> SocketUser:
    """Verify a client JWT and load its (active) user, or raise InvalidToken."""
    config = current_app.config
    user_id = tokens.verify_client_token(
        token,
        secret=config["JWT_SECRET"],
        issuer=config["JWT_ISSUER"],
        audience=config["JWT_AUDIENCE"],
    )
    with session_scope() as session:
        user = session.connection().execute(_SOCKET_USER, {"id": user_id}).first()
    if user is None:
        raise tokens.InvalidToken("unknown user")
    if not user.active:
        raise tokens.InvalidToken("account disabled")
    return SocketUser.of(user)


@dataclass(frozen=True, slots=True)
class Admission:
    """What admit() found out, carried from the request into the socket's life."""

    user: SocketUser | None  # None: the first message must authenticate
    refusal: str | None  # a bad ?token: close with 1008 and this reason
    watch: str | None  # a dashboard's ?watch= topics
    address: str


def admit() -> Admission | Response:
    """Refuse before the handshake what must never get a socket; identify the user.
    Runs in a request context (Origin, cookie session, ?token, client address)."""
    hub, config = live().hub, current_app.config
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return make_response(
            error_response(400, "websocket_required", "This address takes WebSockets only.")
        )
    origin = request.headers.get("Origin")
    if origin and not origin_allowed(origin):
        log.warning("refused /ws from foreign origin %s", origin)
        return make_response(
            error_response(403, "origin_forbidden", "This origin may not open a socket.")
        )
    address = sys.intern(client_address())  # one string for all sockets behind a NAT
    if hub.shutting_down:
        return _refuse(503, "shutting_down", "The server is restarting; retry shortly.")
    if hub.count >= config["WS_MAX_CONNECTIONS"]:
        return _refuse(503, "too_many_connections", "The server is full; retry shortly.")
    if hub.connections_from(address) >= config["WS_MAX_PER_ADDRESS"]:
        return _refuse(429, "too_many_connections", "Too many sockets from this address.")
    # Compression is not negotiated: one encoded frame serves every socket, and no zlib
    # context (~93 KB) is kept per connection. simple-websocket accepts it if offered.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    user, refusal = None, None
    token = request.args.get("token")  # the old design's way; discouraged, never logged
    if token:
        try:
            user = shallow(user_from_token, token)
        except tokens.InvalidToken as exc:
            refusal = str(exc)
    else:
        user = shallow(cookie_user)
    if user and hub.connections_of(user.id) >= config["WS_MAX_PER_USER"]:
        return _refuse(429, "too_many_connections", "Too many open tabs for this user.")
    return Admission(user, refusal, request.args.get("watch"), address)


def cookie_user() -> SocketUser | None:
    """The signed-in user of the session cookie, if any (loads the user: deep work)."""
    return SocketUser.of(current_user) if current_user.is_authenticated else None


def _refuse(status: int, code: str, message: str):
    """An HTTP refusal before the handshake, asking the client to come back later."""
    response = make_response(error_response(status, code, message))
    response.headers["Retry-After"] = "5"
    return response


class SocketEndpoint:
    """WSGI middleware: /ws is served here, every other path by the Flask app."""

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != PATH:
            return self.wsgi_app(environ, start_response)
        with self.app.request_context(environ):
            try:
                admission = admit()
            except Exception:
                log.exception("admitting a socket failed")
                admission = make_response(
                    error_response(500, "internal_error", "Something went wrong on our side.")
                )
            if isinstance(admission, Response):  # with the app's security headers
                return self.app.process_response(admission)(environ, start_response)
        # The socket's life: no request, not even an app context (each is memory kept by
        # every idle socket); what needs Flask runs in shallow(..., app=app).
        try:
            ws = Server(environ, **self.app.config["WS_SERVER_OPTIONS"])
        except Exception as exc:  # a malformed upgrade request; nothing was sent yet
            log.warning("refused a malformed WebSocket handshake: %s", exc)
            with self.app.request_context(environ):
                response = self.app.process_response(
                    make_response(
                        error_response(400, "bad_handshake", "Not a valid WebSocket handshake.")
                    )
                )
            return response(environ, start_response)
        with contextlib.suppress(ConnectionClosed):
            serve(self.app, ws, admission)
        with contextlib.suppress(Exception):  # already closed, or the peer is gone
            ws.close()
        if ws.mode == "gunicorn":
            raise StopIteration  # gunicorn: the connection is over; no HTTP response follows
        return Response()(environ, start_response)  # as flask-sock does elsewhere


def init_app(app: Flask) -> None:
    """Serve /ws in front of the app (inside ProxyFix, which wraps it later)."""
    app.wsgi_app = SocketEndpoint(app, app.wsgi_app)  # type: ignore[method-assign]


def serve(app: Flask, ws: Server, admission: Admission) -> None:
    """One socket: a recipient's tab, or (with ?watch=) a dashboard's live fragments."""
    if admission.refusal:
        ws.close(protocol.CLOSE_POLICY, admission.refusal)
        return
    user = admission.user or await_auth(app, ws)
    if user is None:
        return
    watch, runtime = admission.watch, app.extensions["schoolbell.live"]
    conn = Connection(runtime.hub, ws, user.id, admission.address, watch_only=bool(watch))
    _cap_send_buffer(ws.sock, app.config["WS_SEND_BUFFER_BYTES"])
    runtime.hub.register(conn)
    try:
        if watch:
            start_watching(app, conn, user, watch)
        else:
            conn.send_message(protocol.hello(user.id, user.name, utcnow(), runtime.epoch()))
        receive_loop(app, conn, user)
    finally:
        runtime.hub.unregister(conn)


def _cap_send_buffer(sock: socket.socket, size: int) -> None:
    """A small kernel buffer makes a stalled reader visible after KBs, not MBs."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def await_auth(app: Flask, ws) -> SocketUser | None:
    """Without cookie or ?token, the first message must be {"type":"auth"} in time."""
    raw = ws.receive(timeout=app.config["WS_AUTH_TIMEOUT_S"])
    if raw is None:
        ws.close(protocol.CLOSE_POLICY, "authentication timeout")
        return None
    try:
        message = protocol.parse_client(raw)
        if not isinstance(message, protocol.Auth):
            raise protocol.ProtocolError("auth_required", "authentication required")
        return shallow(user_from_token, message.token, app=app)
    except (protocol.ProtocolError, tokens.InvalidToken) as exc:
        ws.close(protocol.CLOSE_POLICY, str(exc)[:120])
        return None


def start_watching(app: Flask, conn: Connection, user: SocketUser, spec: str) -> None:
    """Subscribe a staff socket to its topics and send each one's current fragment."""
    try:
        first = shallow(topics.watch, conn, spec, app=app)
    except DomainError as exc:
        conn.close(protocol.CLOSE_POLICY, exc.message[:120])
        return
    for html in first:
        if html:
            conn.send_text(html)


class MessageBudget:
    """At most `per_second` client messages per one-second window, for one socket.

    A counter in the receive loop's own frame: no shared store, no lock, no timer
    (limits' MemoryStorage sweeps every key every 10 ms while busy: too much here).
    """

    __slots__ = ("per_second", "used", "window")

    def __init__(self, per_second: int):
        self.per_second = per_second
        self.window = 0
        self.used = 0

    def take(self) -> bool:
        now = int(time.monotonic())
        if now != self.window:
            self.window, self.used = now, 0
        self.used += 1
        return self.used <= self.per_second


def receive_loop(app: Flask, conn: Connection, user: SocketUser) -> None:
    """Answer pings, replay on resume, queue receipts; refuse garbage and floods."""
    ws, budget = conn.ws, MessageBudget(app.config["WS_MESSAGES_PER_SECOND"])
    replayed, refused = conn.watch_only, 0
    while not conn.closed:
        # A client that does not say `resume` within a second still gets what is pending.
        raw = ws.receive(timeout=None if replayed else 1.0)
        if raw is None:
            if not replayed:
                replay(app, conn, None)
                replayed = True
            continue
        if not budget.take():
            refused += 1
            if refused >= FLOOD_CLOSE_AFTER:
                conn.close(protocol.CLOSE_POLICY, "message flood")
            elif refused == 1 or refused % 10 == 0:
                conn.send_message(protocol.error("rate_limited", "too many messages"))
            continue
        try:
            message = protocol.parse_client(raw)
        except protocol.ProtocolError as exc:
            conn.send_message(protocol.error(exc.code, exc.message))
            continue
        if isinstance(message, protocol.Ping):
            if message.legacy:
                conn.send_text(protocol.LEGACY_PONG)
            else:
                conn.send_message(protocol.pong())
        elif isinstance(message, protocol.Resume):
            replay(app, conn, message.last_id)
            replayed = True
        elif isinstance(message, protocol.Ack):
            accept_receipt(app, conn, message)
        else:
            conn.send_message(
                protocol.error("already_authenticated", "this socket is already authenticated")
            )


def replay(app: Flask, conn: Connection, last_id: int | None) -> None:
    """Send from the database what this user is missing, oldest first. The socket is
    registered already, so anything sent meanwhile is held back and follows in order."""
    conn.hold()
    try:
        for notification_id, frame in shallow(replay_frames, conn.user_id, last_id, app=app):
            conn.send_replayed(notification_id, frame)
    finally:
        conn.release()


def replay_frames(user_id: int, last_id: int | None) -> list[tuple[int, bytes]]:
    """The encoded notification frames a (re)connecting socket of this user must get."""
    with session_scope() as session:
        rows = replay_service.replay_for(session, user_id, last_id)
        return [
            (n.id, text_frame(protocol.encode(protocol.notification(n, author))))
            for n, author in rows
        ]


def is_recipient(user_id: int, notification_id: int) -> bool:
    with session_scope() as session:
        return receipts_service.is_recipient(session, user_id, notification_id)


def accept_receipt(app: Flask, conn: Connection, ack: protocol.Ack) -> None:
    """Queue a receipt for the batch writer; refuse ids this user never received."""
    if not conn.has_sent(ack.id) and not shallow(is_recipient, conn.user_id, ack.id, app=app):
        conn.send_message(
            protocol.error("unknown_notification", f"notification {ack.id} was not sent to you")
        )
        return
    app.extensions["schoolbell.live"].receipts.add(conn.user_id, ack.id, ack.state)
