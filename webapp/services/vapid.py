"""VAPID (RFC 8292): this server's identity towards push services.

The key is SCHOOLBELL_VAPID_PRIVATE_KEY (a PEM, or the base64url 32-byte value `flask
--app wsgi vapid-keys` prints), else one generated once into instance/vapid_private.pem
(mode 0600). Browsers subscribe with its public key; changing it ends every
subscription. The subject (VAPID_SUBJECT, mailto: or https:) is whom push services
contact about problems.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from py_vapid.jwt import sign as sign_jwt

from ..config import ENV_PREFIX, ConfigError

log = logging.getLogger(__name__)

EXTENSION = "schoolbell.vapid"
KEY_FILE = "vapid_private.pem"
TOKEN_TTL_S = 12 * 3600  # RFC 8292 allows 24 h
RENEW_BEFORE_S = 3600
_BASE64URL = re.compile(r"[A-Za-z0-9_\-+/]+={0,2}")


def b64url(data: bytes) -> str:
    """base64url without padding, as Web Push writes keys."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: Any) -> bytes:
    """Decode base64url (padding optional; the standard alphabet is accepted too), or
    ValueError."""
    if not isinstance(text, str) or not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    text = text.rstrip("=")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except binascii.Error:
        raise ValueError("not base64url") from None


def parse_private_key(
    value: str, source: str = f"{ENV_PREFIX}VAPID_PRIVATE_KEY"
) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from a PEM, or from base64url: the raw 32-byte value (as
    py-vapid and `vapid-keys` print it) or a DER; ConfigError naming `source`."""
    text = value.strip().replace("\\n", "\n")  # a PEM pasted into one line of .env
    key = None
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = b64url_decode(text)
            if len(raw) == 32:
                key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:
                key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(
            f"{source}: not a P-256 private key (use a PEM, or the base64url value "
            "`flask --app wsgi vapid-keys` prints)."
        )
    return key


def raw_private_key(key: ec.EllipticCurvePrivateKey) -> str:
    """The form SCHOOLBELL_VAPID_PRIVATE_KEY takes: the key's 32 bytes, base64url."""
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def raw_public_key(key: ec.EllipticCurvePrivateKey) -> str:
    """The uncompressed public point, base64url: the browser's `applicationServerKey`."""
    return b64url(
        key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )


def instance_key(instance_path: Path) -> ec.EllipticCurvePrivateKey:
    """The key in instance/vapid_private.pem, generated (mode 0600) the first time. Two
    processes starting at once agree: the file appears whole (a hard link to a finished
    temporary file), and the second keeps the first one's."""
    path = instance_path / KEY_FILE
    if not path.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        temporary = instance_path / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        try:
            os.link(temporary, path)
            log.info("generated a VAPID key in %s", path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    return parse_private_key(path.read_text(), source=str(path))


def subject(config: Mapping[str, Any]) -> str:
    """Whom push services contact: VAPID_SUBJECT (checked at start-up), else MAIL_FROM's
    address (which defaults to schoolbell@ PUBLIC_URL's host)."""
    if config.get("VAPID_SUBJECT"):
        return config["VAPID_SUBJECT"]
    _name, address = parseaddr(config["MAIL_FROM"])
    host = address.rpartition("@")[2]
    if host in ("localhost", "127.0.0.1", "::1"):
        log.warning(
            "%sVAPID_SUBJECT is not set, and MAIL_FROM is at %s: push services cannot reach "
            "anyone about problems (Apple's refuses such subjects)",
            ENV_PREFIX,
            host,
        )
    return f"mailto:{address}"


@dataclass
class Vapid:
    """The key, the subject, and the signed `Authorization` header per push service.

    One header serves every push to a service for 11 hours: signing each push would cost
    an ECDSA signature on the event loop every time, for nothing."""

    private_key: ec.EllipticCurvePrivateKey
    subject: str
    public_key: str = ""
    _headers: dict[str, tuple[str, int]] = field(default_factory=dict)  # origin -> (h, exp)

    def __post_init__(self) -> None:
        self.public_key = raw_public_key(self.private_key)

    def authorization(self, origin: str, now: float | None = None) -> str:
        """`vapid t=<JWT>,k=<public key>` for a push service's origin (`aud`); a new one
        an hour before the last one expires."""
        now = time.time() if now is None else now
        cached = self._headers.get(origin)
        if cached is not None and now < cached[1] - RENEW_BEFORE_S:
            return cached[0]
        expires = int(now) + TOKEN_TTL_S
        token = sign_jwt({"aud": origin, "exp": expires, "sub": self.subject}, self.private_key)
        header = f"vapid t={token},k={self.public_key}"
        self._headers[origin] = (header, expires)
        return header


class _Loader:
    """The app's Vapid, made on first use: a test app learns its instance folder only
    after create_app, and a generated key belongs there."""

    def __init__(self, app: Flask):
        self.app = app
        self.vapid: Vapid | None = None
        configured = app.config.get("VAPID_PRIVATE_KEY")
        self.configured = parse_private_key(configured) if configured else None

    def get(self) -> Vapid:
        if self.vapid is None:
            key = self.configured or instance_key(Path(self.app.instance_path))
            self.vapid = Vapid(key, subject(self.app.config))
        return self.vapid


def init_app(app: Flask) -> None:
    """Check a configured key now: one that does not parse stops start-up."""
    app.extensions[EXTENSION] = _Loader(app)


def of(app: Flask) -> Vapid:
    """The app's VAPID identity."""
    return app.extensions[EXTENSION].get()
