"""A socket's life on /ws: admission -> handshake -> authenticate -> register -> hello
-> replay -> receive loop -> `finally` unregister.

/ws is WSGI middleware in front of Flask, on simple-websocket (flask-sock's engine), not a
flask-sock view: a view runs inside Flask's request context, and a socket's view runs as
long as the socket, so every idle socket kept a whole request alive (Request, session,
URL adapter, the extensions' per-request state, the frames of Flask's dispatch): about
3.5 KB a socket, measured. Here the checks that must refuse before the 101 response
(admission.py) run in a request context that is closed before the handshake; the socket
then lives without any Flask context, and what needs one (database work, templates)
runs in a short-lived greenlet that has one (`in_short_greenlet`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time

import gevent
from flask import Flask, Response, make_response
from gevent.event import Event
from simple_websocket import ConnectionClosed, Server

from .. import errors, i18n, metrics, tokens
from ..db import session_scope, utcnow
from ..errors import DomainError
from ..models import Answer
from ..services import receipts as receipts_service
from ..services import replay as replay_service
from ..services import roll_call
from . import admission, legacy, protocol, topics
from .admission import Admission, SocketUser, user_from_token
from .greenlets import in_short_greenlet
from .hub import Connection, text_frame

log = logging.getLogger(__name__)
PATH = "/ws"
FLOOD_CLOSE_AFTER = legacy.FLOOD_CLOSE_AFTER  # refused messages before the socket is closed
PATHS = (PATH, legacy.PATH)  # the old design's clients have a path of their own


class ReaderGreenlet:
    """simple-websocket's reader "thread" (its `thread_class`) as a bare greenlet. Under
    gevent a threading.Thread is a greenlet too, wrapped in a Thread's start-up and
    bookkeeping (a lock, an Event, names, registries): a tenth of a connect's CPU and a
    few hundred bytes a socket, for nothing it needs."""

    __slots__ = ("greenlet", "name", "target")

    def __init__(self, target):
        self.target = target
        self.name = "simple_websocket reader"
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self.greenlet = gevent.spawn(self.target)


class SocketEndpoint:
    """WSGI middleware: /ws is served here, every other path by the Flask app."""

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO")
        if path not in PATHS:
            return self.wsgi_app(environ, start_response)
        try:
            admitted = admission.admit(self.app, environ, legacy=path == legacy.PATH)
        except Exception:
            log.exception("admitting a socket failed")
            admitted = admission.Refusal(errors.INTERNAL_ERROR, None)
        if isinstance(admitted, admission.Refusal):  # with the app's security headers
            with self.app.request_context(environ):
                response = self.app.process_response(admitted.response())
            return response(environ, start_response)
        try:
            return self.live(environ, start_response, admitted)
        finally:
            if admitted.pending is not None:  # ended before its first message authenticated
                admitted.pending.settle(authenticated=False)

    def live(self, environ, start_response, admitted: Admission):
        """The handshake and the socket's life: no request, not even an app context
        (each is memory kept by every idle socket); what needs Flask runs in
        in_short_greenlet(..., app=app)."""
        try:
            ws = Server(
                environ,
                subprotocols=[admission.PROTOCOL],
                thread_class=ReaderGreenlet,
                event_class=Event,
                **self.app.config["WS_SERVER_OPTIONS"],
            )
        except Exception as exc:  # a malformed upgrade request; nothing was sent yet
            log.warning("refused a malformed WebSocket handshake: %s", exc)
            with self.app.request_context(environ):
                response = self.app.process_response(
                    make_response(errors.respond(errors.BAD_HANDSHAKE, json=True))
                )
            return response(environ, start_response)
        with contextlib.suppress(ConnectionClosed):
            serve(self.app, ws, admitted)
        with contextlib.suppress(Exception):  # already closed, or the peer is gone
            ws.close()
        if ws.mode == "gunicorn":
            raise StopIteration  # gunicorn: the connection is over; no HTTP response follows
        return Response()(environ, start_response)  # as flask-sock does elsewhere


def init_app(app: Flask) -> None:
    """Serve /ws in front of the app (inside ProxyFix, which wraps it later)."""
    admission.init_app(app)
    app.wsgi_app = SocketEndpoint(app, app.wsgi_app)  # type: ignore[method-assign]


def serve(app: Flask, ws: Server, admitted: Admission) -> None:
    """One socket: a recipient's tab, (with ?watch=) a dashboard's live fragments, or
    an old design's client (legacy.py)."""
    if admitted.refusal:
        ws.close(protocol.CLOSE_POLICY, admitted.refusal)
        return
    user = admitted.user
    if user is None:
        user = await_auth(app, ws)
        admitted.pending.settle(authenticated=user is not None)
        if user is None:
            return
    watch, runtime = admitted.watch, app.extensions["schoolbell.live"]
    if admitted.legacy:
        conn = legacy.connection(runtime, ws, user.id)
    else:
        conn = Connection(runtime.hub, ws, user.id, watch_only=bool(watch))
    _cap_send_buffer(ws.sock, app.config["WS_SEND_BUFFER_BYTES"])
    runtime.hub.register(conn)
    locale = socket_locale(app, user, ws)
    try:
        if admitted.legacy:  # no hello: the old client would show it as a popup
            legacy.replay(app, conn)
            legacy.receive_loop(conn, MessageBudget(app.config["WS_MESSAGES_PER_SECOND"]))
        elif watch:
            start_watching(app, conn, watch, locale)
        else:
            i18n_fields = i18n.client_i18n(app, locale)
            conn.send_message(
                protocol.hello(user.id, user.name, utcnow(), runtime.epoch(), i18n_fields)
            )
        receive_loop(app, conn)
    finally:
        runtime.hub.unregister(conn)


def socket_locale(app: Flask, user: SocketUser, ws: Server) -> str:
    """The language a socket speaks (i18n.choose: the person's, else the handshake's
    Accept-Language, else the school's). A tab learns it, and the client's strings, in
    its hello (an embed on another app's page too); a dashboard's fragments are
    rendered in it."""
    accept_language = ws.environ.get("HTTP_ACCEPT_LANGUAGE")
    return i18n.choose(user.language, accept_language, app.config["DEFAULT_LANGUAGE"])


def _cap_send_buffer(sock: socket.socket, size: int) -> None:
    """A small kernel buffer makes a stalled reader visible after KBs, not MBs."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def await_auth(app: Flask, ws) -> SocketUser | None:
    """Without cookie or ?token, the first message must be {"type":"auth"} in time."""
    raw = ws.receive(timeout=app.config["WS_AUTH_TIMEOUT_S"])
    if raw is None:
        ws.close(protocol.CLOSE_POLICY, errors.AUTH_TIMEOUT.message)
        return None
    try:
        message = protocol.parse_client(raw)
        if not isinstance(message, protocol.Auth):
            raise protocol.ProtocolError(errors.AUTH_REQUIRED)
        return in_short_greenlet(user_from_token, message.token, app=app)
    except (protocol.ProtocolError, tokens.InvalidToken) as exc:
        ws.close(protocol.CLOSE_POLICY, str(exc)[:120])
        return None


def start_watching(app: Flask, conn: Connection, spec: str, locale: str) -> None:
    """Subscribe a staff socket to its topics and send each one's current fragment."""
    try:
        first = in_short_greenlet(topics.watch, conn, spec, locale, app=app)
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


def receive_loop(app: Flask, conn: Connection) -> None:
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
                conn.close(protocol.CLOSE_POLICY, errors.MESSAGE_FLOOD.message)
            elif refused == 1 or refused % 10 == 0:
                conn.send_message(protocol.error(errors.MESSAGES_RATE_LIMITED))
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
            replay(app, conn, message.last_id, message.open)
            replayed = True
        elif isinstance(message, protocol.Ack):
            accept_receipt(app, conn, message)
        elif isinstance(message, protocol.Tabs):
            conn.hub.set_tabs(conn, message.count)
        elif isinstance(message, protocol.Answer):
            accept_answer(app, conn, message)
        else:
            conn.send_message(protocol.error(errors.ALREADY_AUTHENTICATED))


def replay(
    app: Flask, conn: Connection, last_id: int | None, shown: tuple[tuple[int, int], ...] = ()
) -> None:
    """Send from the database what this user is missing, oldest first, then what changed
    of the alerts the tab still shows (`shown`). The socket is registered already, so
    anything sent meanwhile is held back and follows in order."""
    conn.hold()
    try:
        frames, changes = in_short_greenlet(replay_frames, conn.user_id, last_id, shown, app=app)
        if frames or changes:  # once per replay (most reconnects have nothing to replay)
            metrics.REPLAYED_MESSAGES.inc(len(frames) + len(changes))
        for notification_id, frame in frames:
            conn.send_replayed(notification_id, frame)
        for frame in changes:
            conn.send_frame(frame)
    finally:
        conn.release()


def replay_frames(
    user_id: int, last_id: int | None, shown: tuple[tuple[int, int], ...] = ()
) -> tuple[list[tuple[int, bytes]], list[bytes]]:
    """The encoded notification frames a (re)connecting socket of this user must get,
    and the frames that update, withdraw, expire or end the alerts it still shows."""
    with session_scope() as session:
        rows = replay_service.replay_for(session, user_id, last_id)
        frames = [
            (n.id, text_frame(protocol.encode(protocol.notification(n, author))))
            for n, author in rows
        ]
        changes = [
            text_frame(protocol.encode(protocol.change(change, row)))
            for change, row in replay_service.changed_since_shown(session, user_id, shown)
        ]
        return frames, changes


def is_recipient(user_id: int, notification_id: int) -> bool:
    with session_scope() as session:
        return receipts_service.is_recipient(session, user_id, notification_id)


def accept_receipt(app: Flask, conn: Connection, ack: protocol.Ack) -> None:
    """Queue a receipt for the batch writer; refuse ids this user never received."""
    if not conn.has_sent(ack.id) and not in_short_greenlet(
        is_recipient, conn.user_id, ack.id, app=app
    ):
        conn.send_message(protocol.error(errors.UNKNOWN_NOTIFICATION, id=ack.id))
        return
    app.extensions["schoolbell.live"].receipts.add(conn.user_id, ack.id, ack.state)


def record_answer(user_id: int, answer: protocol.Answer) -> bool:
    with session_scope() as session:
        return roll_call.record_answer(
            session, user_id, answer.id, Answer(answer.status), answer.text
        )


def accept_answer(app: Flask, conn: Connection, answer: protocol.Answer) -> None:
    """Keep a roll-call answer (it counts as reading the alert); refuse one to anything
    but an emergency this user got that is not over."""
    if not in_short_greenlet(record_answer, conn.user_id, answer, app=app):
        conn.send_message(protocol.error(errors.UNKNOWN_EMERGENCY, id=answer.id))
        return
    live = app.extensions["schoolbell.live"]
    live.receipts.add(conn.user_id, answer.id, "read")
    live.answer_recorded(answer.id)
