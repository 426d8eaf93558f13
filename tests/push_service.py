"""A stand-in Web Push service on 127.0.0.1, strict like a real one (RFC 8030, 8291, 8292).

    with PushService() as service:
        phone = service.browser("phone")          # its .subscription is what a browser
        ...                                       # hands to POST /api/v1/push/subscriptions
        service.answer("phone", 201, (429, {"Retry-After": "30"}), 410)
        [push] = service.received("phone")        # .message is the decrypted JSON

Every POST to a browser's endpoint is checked: `Content-Encoding: aes128gcm`; a body that
decrypts with that browser's private key and auth secret; `Authorization: vapid t=<JWT>,
k=<key>` whose JWT verifies (ES256) with k, with `aud` the service's origin, `exp` in
the future and within 24 h, and a mailto: or https: `sub`; a whole `TTL` over 0; an
`Urgency` RFC 8030 knows. A push that fails a check is answered 400 (413 when over
4,096 bytes) and its reason lands in `.errors`, which every test can assert is empty.
Unknown paths answer 404; every request whatsoever is counted in `.requests` (an SSRF
test asserts there were none). Binds to 127.0.0.1 only; handler threads time out, so it
never hangs a test.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid.jwt import decode as verify_jwt

from webapp.services.vapid import b64url, b64url_decode

MAX_BODY_BYTES = 4096  # what RFC 8030 services must accept; more is a 413
URGENCIES = {"very-low", "low", "normal", "high"}
MAX_VAPID_LIFETIME_S = 24 * 3600
Answer = int | tuple[int, dict[str, str]]


@dataclass
class Push:
    """One push the service took (or refused with the status it was told to answer)."""

    plaintext: bytes
    headers: dict[str, str]
    claims: dict[str, Any]
    status: int
    at: float = field(default_factory=time.time)  # when it arrived

    @property
    def message(self) -> Any:
        return json.loads(self.plaintext)


@dataclass
class FakeBrowser:
    """A browser's side of one subscription: its P-256 key pair and auth secret."""

    name: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        return b64url(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    @property
    def subscription(self) -> dict[str, Any]:
        """What PushSubscription.toJSON() gives the page."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": b64url(self.auth)},
        }


class Refused(Exception):
    """A push broke a rule; the message says which."""


class PushService:
    """The stand-in service: start with `with` (or `.start()`), stop with `.close()`."""

    def __init__(self, request_timeout_s: float = 5):
        self._lock = threading.Lock()
        self._browsers: dict[str, FakeBrowser] = {}
        self._answers: dict[str, list[Answer]] = {}
        self._received: dict[str, list[Push]] = {}
        self.errors: list[str] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(request_timeout_s))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> PushService:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> PushService:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    # What tests use ------------------------------------------------------------------

    def browser(self, name: str) -> FakeBrowser:
        """A new browser subscribed at <origin>/push/<name>."""
        browser = FakeBrowser(name, f"{self.origin}/push/{name}")
        with self._lock:
            self._browsers[name] = browser
            self._received.setdefault(name, [])
        return browser

    def answer(self, name: str, *answers: Answer) -> None:
        """Queue what the next pushes to `name` are answered (then 201 again)."""
        with self._lock:
            self._answers.setdefault(name, []).extend(answers)

    def received(self, name: str) -> list[Push]:
        """The pushes that passed every check, with what they were answered."""
        with self._lock:
            return list(self._received.get(name, []))

    def wait_for(self, name: str, count: int = 1, timeout_s: float = 5) -> list[Push]:
        """Wait until `count` pushes to `name` arrived; return them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pushes = self.received(name)
            if len(pushes) >= count:
                return pushes
            time.sleep(0.02)
        raise AssertionError(f"{count} push(es) to {name} not received within {timeout_s} s")

    # The service -------------------------------------------------------------------

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes):
        """(status, headers) for one request."""
        with self._lock:
            self.requests.append((method, path))
            name = path.removeprefix("/push/") if path.startswith("/push/") else None
            browser = self._browsers.get(name) if name else None
        if browser is None or method != "POST":
            return 404, {}
        try:
            push = self._check(browser, headers, body)
        except Refused as exc:
            with self._lock:
                self.errors.append(f"{name}: {exc}")
            return (413 if len(body) > MAX_BODY_BYTES else 400), {}
        with self._lock:
            queued = self._answers.get(name) or []
            answer = queued.pop(0) if queued else 201
            status, extra = answer if isinstance(answer, tuple) else (answer, {})
            push.status = status
            self._received[name].append(push)
        return status, extra

    def _check(self, browser: FakeBrowser, headers: dict[str, str], body: bytes) -> Push:
        """The push, decrypted, or Refused saying what is wrong with it."""
        if len(body) > MAX_BODY_BYTES:
            raise Refused(f"body of {len(body)} bytes (at most {MAX_BODY_BYTES})")
        if headers.get("content-encoding") != "aes128gcm":
            raise Refused(f"Content-Encoding {headers.get('content-encoding')!r}")
        ttl = headers.get("ttl", "")
        if not ttl.isdigit() or int(ttl) <= 0:
            raise Refused(f"TTL {ttl!r} (a whole number over 0)")
        if "urgency" in headers and headers["urgency"] not in URGENCIES:
            raise Refused(f"Urgency {headers['urgency']!r}")
        claims = self._vapid_claims(headers.get("authorization", ""))
        try:
            plaintext = http_ece.decrypt(
                body, private_key=browser.private_key, auth_secret=browser.auth, version="aes128gcm"
            )
        except Exception as exc:  # any failure to decrypt is the sender's
            raise Refused(f"body does not decrypt: {exc!r}") from None
        return Push(plaintext=plaintext, headers=headers, claims=claims, status=0)

    def _vapid_claims(self, authorization: str) -> dict[str, Any]:
        """The verified claims of `vapid t=<JWT>, k=<public key>` (RFC 8292)."""
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise Refused(f"Authorization scheme {scheme!r} (vapid)")
        parts = dict(item.strip().partition("=")[::2] for item in params.split(",") if "=" in item)
        token, key = parts.get("t", ""), parts.get("k", "")
        try:
            if len(b64url_decode(key)) != 65:
                raise ValueError("not an uncompressed P-256 point")
            header = json.loads(b64url_decode(token.split(".")[0]))
            claims = verify_jwt(token, key)
        except Exception as exc:
            raise Refused(f"VAPID token does not verify: {exc!r}") from None
        if header.get("alg") != "ES256":
            raise Refused(f"VAPID alg {header.get('alg')!r}")
        if claims.get("aud") != self.origin:
            raise Refused(f"VAPID aud {claims.get('aud')!r} (expected {self.origin})")
        exp, now = claims.get("exp"), time.time()
        if not isinstance(exp, int) or not now < exp <= now + MAX_VAPID_LIFETIME_S:
            raise Refused(f"VAPID exp {exp!r} (in the future, within 24 h)")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
            raise Refused(f"VAPID sub {sub!r}")
        return claims

    def _handler(self, timeout_s: float):
        service = self

        class Handler(BaseHTTPRequestHandler):
            timeout = timeout_s  # a client that stalls mid-request cannot hang a thread
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 1 << 20)) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra = service._handle(self.command, self.path, headers, body)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = do_PUT = do_DELETE = _serve

            def log_message(self, format, *args) -> None:
                pass  # quiet: tests read .received and .errors

        return Handler
