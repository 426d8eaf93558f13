"""Client JWTs (for /ws and embedded pages) and opaque API tokens.

JWTs are HS256 only, and must carry exp, iat, aud, iss and sub: a token without `exp`
never expires unless `require` says otherwise, so verification always passes it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from .db import utcnow

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "aud", "iss", "sub"]
API_TOKEN_PREFIX = "sbk_"


class InvalidToken(Exception):
    """A token was refused; the message is safe to show (it never contains the token)."""


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


def verify_client_token(token: str, *, secret: str, issuer: str, audience: str) -> int:
    """Return the user id of a valid client JWT, or raise InvalidToken saying why."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={"require": REQUIRED_CLAIMS},
            leeway=5,
        )
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
    except jwt.InvalidTokenError:
        raise InvalidToken("invalid token") from None
    try:
        return int(claims["sub"])
    except (TypeError, ValueError):
        raise InvalidToken("invalid token subject") from None


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
