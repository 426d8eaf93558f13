"""Before the 101: what /ws refuses, and who a new socket belongs to.

Runs on the bare WSGI environ, before any Flask context: Origin, capacity, a JWT (as a
subprotocol or `?token=`) and the client address need none, and a Flask request
context costs about a tenth of a connect. Only a session cookie is read in one (Flask's
session and flask-login need it), and a refusal is rendered in one (the app's error
shape and security headers).

Limits are set where an abuser pays and a school does not. A school's NAT puts a
thousand people's tabs behind one address, so tabs that prove who they are (a session
cookie, or a JWT as a subprotocol or `?token=`) are limited per user (`WS_MAX_PER_USER`),
never per address. Per address only what needs no credentials is limited: sockets still waiting
for their first `auth` message (`WS_MAX_UNAUTHENTICATED_PER_ADDRESS`), and handshakes
that did not authenticate (a bad token, a wrong or missing first message, silence:
`WS_FAILED_AUTH_PER_ADDRESS`, counted in the app's rate-limit storage, so with Redis
across processes). A flood from one address gets 429 with Retry-After; the signed-in
tabs behind it do not notice. While that storage fails, each process counts on its own:
Redis being away never refuses or breaks a handshake.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass

from flask import Flask, Request, Response, current_app, make_response
from flask_login import current_user
from limits import RateLimitItem
from limits import parse as parse_limit
from limits.errors import StorageError
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import bindparam, select

from .. import errors, tokens
from ..db import session_scope
from ..extensions import limiter
from ..models import User
from .greenlets import in_short_greenlet

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5  # a refusal for capacity or shutdown: come back soon


@dataclass(frozen=True, slots=True)
class SocketUser:
    """What the socket needs of its user, read once (no ORM object held open)."""

    id: int
    name: str
    is_staff: bool
    language: str | None  # their own choice; None: the browser's decides

    @classmethod
    def of(cls, user) -> SocketUser:
        """From a User, or a row with its id, name, role and language."""
        return cls(user.id, user.name, user.role.is_staff, user.language)


class PendingAuth:
    """A socket admitted without credentials, counted against its address until it
    authenticates or ends (`settle`, once)."""

    __slots__ = ("address", "gate", "settled")

    def __init__(self, gate: AddressGate, address: str):
        self.gate, self.address, self.settled = gate, address, False

    def settle(self, authenticated: bool) -> None:
        if not self.settled:
            self.settled = True
            self.gate.settled(self.address, authenticated)


class SharedLimit:
    """A rate limit counted in the app's rate-limit storage (Flask-Limiter's, so shared
    by every process when that is Redis). When the storage fails, this process counts
    in its own memory for RETRY_SHARED_S, then tries the storage again, as Flask-Limiter
    does for sign-ins: an error is logged once per outage, never raised to the caller."""

    RETRY_SHARED_S = 5

    def __init__(self, limit: RateLimitItem, scope: str):
        self.limit, self.scope = limit, scope
        self._local = FixedWindowRateLimiter(MemoryStorage())
        self._local_until = 0.0  # time.monotonic(): till then, count in this process only
        self._failing = False

    def test(self, key: str) -> bool:
        """Whether one more hit fits."""
        return self._call("test", key)

    def hit(self, key: str) -> None:
        self._call("hit", key)

    def reset_at(self, key: str) -> float:
        """When the current window ends (time.time())."""
        return self._call("get_window_stats", key)[0]

    def _call(self, method: str, key: str):
        if time.monotonic() >= self._local_until:
            shared = limiter.limiter  # Flask-Limiter's own in-memory one while it falls back
            try:
                result = getattr(shared, method)(self.limit, self.scope, key)
            except StorageError as exc:
                self._local_until = time.monotonic() + self.RETRY_SHARED_S
                if not self._failing:
                    self._failing = True
                    log.warning(
                        "rate-limit storage failed (%s): %s is counted by this process "
                        "alone until it answers again",
                        exc,
                        self.scope,
                    )
            else:
                if self._failing and shared.storage is limiter.storage:
                    self._failing = False
                    log.warning("rate-limit storage answers again: %s is shared again", self.scope)
                return result
        return getattr(self._local, method)(self.limit, self.scope, key)


class AddressGate:
    """This process's count of not-yet-authenticated sockets per address, and the
    failed-authentication budget per address (shared across processes when the
    rate-limit storage is)."""

    SCOPE = "ws-failed-auth"
    WARN_EVERY_S = 10  # a flood is logged once in a while, not once per refusal

    def __init__(self, max_unauthenticated: int, failed_auth_limit: str):
        self.max_unauthenticated = max_unauthenticated
        self.failed_auth = SharedLimit(parse_limit(failed_auth_limit), self.SCOPE)
        self.unauthenticated: dict[str, int] = {}
        self._warned: dict[tuple[str, str], float] = {}
        self._refused: dict[tuple[str, str], int] = {}

    def _warn(self, address: str, why: str) -> None:
        key = (address, why)
        self._refused[key] = self._refused.get(key, 0) + 1
        now = time.monotonic()
        if now - self._warned.get(key, 0.0) >= self.WARN_EVERY_S:
            log.warning("refused %d /ws from %s: %s", self._refused.pop(key), address, why)
            self._warned[key] = now
            if len(self._warned) > 10_000:  # forget old floods
                self._warned = {k: t for k, t in self._warned.items() if now - t < 60}

    def refusal(self, address: str) -> Refusal | None:
        """A 429 when this address may not open another socket without credentials."""
        if self.unauthenticated.get(address, 0) >= self.max_unauthenticated:
            self._warn(address, "too many unauthenticated sockets")
            return Refusal(errors.TOO_MANY_UNAUTHENTICATED)
        if not self.failed_auth.test(address):
            reset = self.failed_auth.reset_at(address)
            self._warn(address, "too many failed authentications")
            return Refusal(errors.TOO_MANY_FAILED_HANDSHAKES, max(1, int(reset - time.time()) + 1))
        return None

    def pending(self, address: str) -> PendingAuth:
        self.unauthenticated[address] = self.unauthenticated.get(address, 0) + 1
        return PendingAuth(self, address)

    def failed(self, address: str) -> None:
        self.failed_auth.hit(address)

    def settled(self, address: str, authenticated: bool) -> None:
        left = self.unauthenticated.get(address, 1) - 1
        if left:
            self.unauthenticated[address] = left
        else:
            self.unauthenticated.pop(address, None)
        if not authenticated:
            self.failed(address)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP answer instead of a socket; `retry_after_s` None: retrying cannot help."""

    kind: errors.ErrorCode
    retry_after_s: int | None = RETRY_AFTER_S

    def response(self) -> Response:
        """The JSON error, in a request context of the app."""
        response = make_response(errors.respond(self.kind, json=True))
        if self.retry_after_s is not None:
            response.headers["Retry-After"] = str(self.retry_after_s)
        return response


@dataclass(frozen=True, slots=True)
class Admission:
    """What admit() found out, carried from the request into the socket's life."""

    user: SocketUser | None  # None: the first message must authenticate
    refusal: str | None  # a bad ?token: close with 1008 and this reason
    watch: str | None  # a dashboard's ?watch= topics
    pending: PendingAuth | None  # counted until the first message authenticates
    legacy: bool = False  # the old design's path: its wire format (realtime/legacy.py)


def origin_allowed(app: Flask, req: Request, origin: str) -> bool:
    """Same origin as the app, or listed in SCHOOLBELL_ALLOWED_ORIGINS."""
    origin = origin.strip().rstrip("/").lower()
    own = req.host_url.rstrip("/").lower()
    return origin == own or origin in app.config["ALLOWED_ORIGINS"]


# Built once: thousands of sockets reconnecting at once each run it.
_SOCKET_COLUMNS = (User.id, User.name, User.role, User.active, User.language)
_SOCKET_USER = select(*_SOCKET_COLUMNS).where(User.id == bindparam("id"))
_SOCKET_USER_BY_EMAIL = select(*_SOCKET_COLUMNS).where(User.email == bindparam("email"))


def user_from_token(token: str) -> SocketUser:
    """Verify a client JWT and load its (active) user, or raise InvalidToken."""
    config = current_app.config
    user_id = tokens.verify_client_token(
        token,
        secret=config["JWT_SECRET"],
        issuer=config["JWT_ISSUER"],
        audience=config["JWT_AUDIENCE"],
    )
    return _active_user(_SOCKET_USER, {"id": user_id})


def legacy_user_from_token(token: str) -> SocketUser:
    """On the old design's path: our own client JWT, or (with LEGACY_JWT_SECRET set)
    one of the old backend's, whose `sub` is the user's e-mail; else InvalidToken.
    The reason given is the old backend's when the token is not signed with our key."""
    config = current_app.config
    try:
        return user_from_token(token)
    except tokens.InvalidToken as ours:
        if not config["LEGACY_JWT_SECRET"]:
            raise
        try:
            email = tokens.verify_legacy_token(
                token,
                secret=config["LEGACY_JWT_SECRET"],
                issuer=config["LEGACY_JWT_ISSUER"],
                audience=config["LEGACY_JWT_AUDIENCE"],
            )
        except tokens.InvalidToken as theirs:
            raise (theirs if isinstance(ours, tokens.WrongKey) else ours) from None
    return _active_user(_SOCKET_USER_BY_EMAIL, {"email": email.strip().lower()})


def _active_user(statement, params: dict) -> SocketUser:
    """The one user the statement finds, if active; else InvalidToken."""
    with session_scope() as session:
        user = session.connection().execute(statement, params).first()
    if user is None:
        raise tokens.InvalidToken("unknown user")
    if not user.active:
        raise tokens.InvalidToken(errors.ACCOUNT_DISABLED_CLOSE.message)
    return SocketUser.of(user)


PROTOCOL = "schoolbell"
TOKEN_PROTOCOL_PREFIX = "schoolbell.jwt."


def token_protocol(offered: str) -> str | None:
    """The client JWT a browser offered as a subprotocol, if any:
    `new WebSocket(url, ["schoolbell", "schoolbell.jwt." + token])`. It authenticates
    the socket before the handshake (no round trip for an `auth` message) and keeps the
    token out of URLs and logs; the server answers with `schoolbell` alone."""
    for item in offered.split(","):
        item = item.strip()
        if item.startswith(TOKEN_PROTOCOL_PREFIX):
            return item[len(TOKEN_PROTOCOL_PREFIX) :]
    return None


def signin_cookies(config) -> tuple[str, str]:
    """The cookies that can sign a socket in: Flask's session, flask-login's remember-me."""
    return config["SESSION_COOKIE_NAME"], config.get("REMEMBER_COOKIE_NAME", "remember_token")


def cookie_user() -> SocketUser | None:
    """The signed-in user of the session cookie, if any (loads the user: deep work)."""
    return SocketUser.of(current_user) if current_user.is_authenticated else None


def admit(app: Flask, environ: dict, *, legacy: bool = False) -> Admission | Refusal:
    """Refuse before the handshake what must never get a socket; identify the user.
    `legacy`: the old design's path, whose clients authenticate with ?token= only."""
    req, config = Request(environ), app.config
    runtime = app.extensions["schoolbell.live"]
    hub = runtime.hub
    if req.headers.get("Upgrade", "").lower() != "websocket":
        return Refusal(errors.WEBSOCKET_REQUIRED, None)
    origin = req.headers.get("Origin")
    if origin and not origin_allowed(app, req, origin):
        log.warning("refused /ws from foreign origin %s", origin)
        return Refusal(errors.ORIGIN_FORBIDDEN, None)
    if hub.shutting_down:
        return Refusal(errors.SHUTTING_DOWN)
    if hub.count >= config["WS_MAX_CONNECTIONS"]:
        return Refusal(errors.TOO_MANY_CONNECTIONS)
    # Compression is not negotiated: one encoded frame serves every socket, and no zlib
    # context (~93 KB) is kept per connection. simple-websocket accepts it if offered.
    environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    user, refusal = None, None
    token = token_protocol(req.headers.get("Sec-WebSocket-Protocol", ""))
    # ?token= is the old design's way: discouraged (URLs end up in logs), never logged here.
    token = token or req.args.get("token")
    if token:
        verify = legacy_user_from_token if legacy else user_from_token
        try:
            user = in_short_greenlet(verify, token, app=app)
        except tokens.InvalidToken as exc:
            refusal = str(exc)
    elif legacy:  # its clients never send an `auth` message
        refusal = errors.AUTH_REQUIRED.message
    elif any(name in req.cookies for name in signin_cookies(config)):
        with app.request_context(environ):
            user = in_short_greenlet(cookie_user)
    watch = None if legacy else req.args.get("watch")
    if user is not None:
        open_sockets = hub.connections_of(user.id) + runtime.presence.sockets_elsewhere(user.id)
        if open_sockets >= config["WS_MAX_PER_USER"]:
            return Refusal(errors.TOO_MANY_TABS)
        return Admission(user, None, watch, None, legacy)
    gate: AddressGate = app.extensions["schoolbell.ws_gate"]
    address = sys.intern(req.remote_addr or "unknown")  # one string for all behind a NAT
    refused = gate.refusal(address)
    if refused is not None:
        return refused
    if refusal is not None:
        gate.failed(address)
        return Admission(None, refusal, watch, None, legacy)
    return Admission(None, None, watch, gate.pending(address))


def init_app(app: Flask) -> None:
    config = app.config
    app.extensions["schoolbell.ws_gate"] = AddressGate(
        config["WS_MAX_UNAUTHENTICATED_PER_ADDRESS"], config["WS_FAILED_AUTH_PER_ADDRESS"]
    )
