"""Client JWTs (for /ws and embedded pages), opaque API tokens, and signed links.

JWTs are HS256 only, and must carry exp, iat, aud, iss and sub: a token without `exp`
never expires unless `require` says otherwise, so verification always passes it. The old
backend's tokens (accepted on the legacy socket path when SCHOOLBELL_LEGACY_JWT_SECRET is
set) must carry exp and sub (an e-mail address), and aud / iss where configured.

Signed links (in e-mails) name a recipient and an announcement, plus a random nonce
that makes each link single-use (services/links.py records the nonces used). They are
signed with SECRET_KEY and a salt per purpose, so an `open` link is no `confirm` link.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .db import utcnow

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "aud", "iss", "sub"]
API_TOKEN_PREFIX = "sbk_"
LINK_SALT = "schoolbell.link."  # + the purpose
LINK_PURPOSES = ("open", "confirm")
MAX_LINK_TOKEN_CHARS = 512  # ours are about 90; longer ones are not worth verifying
MAX_NONCE_CHARS = 64  # used_links.nonce


class InvalidToken(Exception):
    """A token was refused; the message is safe to show (it never contains the token)."""


class WrongKey(InvalidToken):
    """A well-formed JWT signed with another key (perhaps the old backend's)."""


class InvalidLink(InvalidToken):
    """A signed link that is not one of ours: tampered, cut short, or another purpose's."""


class LinkExpired(InvalidToken):
    """A signed link of ours, older than its maximum age."""


@dataclass(frozen=True)
class LinkClaims:
    """What a signed link names."""

    user_id: int
    notification_id: int
    nonce: str


@dataclass(frozen=True)
class ClientToken:
    token: str
    expires_at: datetime


def issue_client_token(
    user_id: int, *, secret: str, issuer: str, audience: str, ttl_s: int
) -> ClientToken:
    """Sign a short-lived JWT naming the user (`sub` = user id as a string)."""
    now = utcnow().replace(microsecond=0)
    expires_at = now + timedelta(seconds=ttl_s)
    claims = {
        "sub": str(user_id),
        "iat": now,
        "nbf": now,
        "exp": expires_at,
        "iss": issuer,
        "aud": audience,
        "jti": secrets.token_urlsafe(12),
    }
    return ClientToken(jwt.encode(claims, secret, algorithm=ALGORITHM), expires_at)


def _decode(token: str, secret: str, **checks) -> dict:
    """jwt.decode pinned to HS256, its refusals as InvalidToken saying why."""
    try:
        return jwt.decode(token, secret, algorithms=[ALGORITHM], leeway=5, **checks)
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.ImmatureSignatureError:
        raise InvalidToken("token not yet valid") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("wrong token audience") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken("wrong token issuer") from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidToken(f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidSignatureError:
        raise WrongKey("invalid token") from None
    except jwt.InvalidTokenError:
        raise InvalidToken("invalid token") from None


def verify_client_token(token: str, *, secret: str, issuer: str, audience: str) -> int:
    """Return the user id of a valid client JWT, or raise InvalidToken saying why."""
    claims = _decode(
        token, secret, audience=audience, issuer=issuer, options={"require": REQUIRED_CLAIMS}
    )
    try:
        return int(claims["sub"])
    except (TypeError, ValueError):
        raise InvalidToken("invalid token subject") from None


LEGACY_REQUIRED_CLAIMS = ["exp", "sub"]


def verify_legacy_token(token: str, *, secret: str, issuer: str = "", audience: str = "") -> str:
    """Return the e-mail address (`sub`) of a valid JWT of the old backend, or raise
    InvalidToken saying why. Its tokens surely carry only `sub` and `exp`: those are
    required; `aud` and `iss` are checked (and required) only when configured. Otherwise
    the same rigour as ours: HS256 pinned (so `alg: none` and RS/HS confusion fail),
    expired and not-yet-valid tokens refused."""
    required = [*LEGACY_REQUIRED_CLAIMS]
    required += ["aud"] if audience else []
    required += ["iss"] if issuer else []
    claims = _decode(
        token,
        secret,
        audience=audience or None,
        issuer=issuer or None,
        # Without a configured audience an `aud` claim is not checked (PyJWT would
        # refuse every token that has one).
        options={"require": required, "verify_aud": bool(audience)},
    )
    subject = claims["sub"]
    if not isinstance(subject, str) or "@" not in subject or len(subject) > 254:
        raise InvalidToken("invalid token subject")
    return subject


def is_client_token(token: str) -> bool:
    """Whether a Bearer token is a client JWT (three dot-separated parts) rather than an
    API token (`sbk_...`)."""
    return not token.startswith(API_TOKEN_PREFIX) and token.count(".") == 2


def new_api_token() -> tuple[str, str, str]:
    """A fresh API token: (the token to show once, its hash to store, its prefix)."""
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_api_token(token), token[: len(API_TOKEN_PREFIX) + 6]


def hash_api_token(token: str) -> str:
    """SHA-256 of an API token (tokens are random, so no salt or slow hash is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _link_serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    if purpose not in LINK_PURPOSES:
        raise ValueError(f"unknown link purpose {purpose!r}")
    return URLSafeTimedSerializer(secret, salt=LINK_SALT + purpose)


def sign_link(secret: str, purpose: str, user_id: int, notification_id: int) -> str:
    """A URL-safe token for one recipient's `purpose` link to one announcement, with a
    fresh nonce (each link made is a different, single-use one)."""
    nonce = secrets.token_urlsafe(16)
    return _link_serializer(secret, purpose).dumps([user_id, notification_id, nonce])


def verify_link(secret: str, purpose: str, token: str, max_age_s: int) -> LinkClaims:
    """The claims of a valid `purpose` link, or LinkExpired / InvalidLink."""
    if not token or len(token) > MAX_LINK_TOKEN_CHARS:
        raise InvalidLink("invalid link")
    try:
        claims = _link_serializer(secret, purpose).loads(token, max_age=max_age_s)
    except SignatureExpired:  # raised only once the signature checked out
        raise LinkExpired("link expired") from None
    except BadSignature:
        raise InvalidLink("invalid link") from None
    match claims:
        case [int() as user_id, int() as notification_id, str() as nonce] if (
            not isinstance(user_id, bool)
            and not isinstance(notification_id, bool)
            and 0 < len(nonce) <= MAX_NONCE_CHARS
        ):
            return LinkClaims(user_id, notification_id, nonce)
    raise InvalidLink("invalid link")
