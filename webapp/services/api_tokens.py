"""API tokens for other systems, and the client JWTs they may request for users."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import errors, tokens
from ..db import utcnow
from ..models import ApiToken, Role, User
from . import audit
from .users import get_by_email


def create(
    session: Session, name: str, owner: User, actor: User | None = None, address: str | None = None
) -> tuple[ApiToken, str]:
    """Create a named API token acting as `owner` (an admin); return it and its secret."""
    name = " ".join((name or "").split())
    if not name or len(name) > 100:
        raise errors.INVALID_NAME.error()
    if owner.role is not Role.ADMIN:
        raise errors.OWNER_NOT_ADMIN.error()
    if session.scalar(select(ApiToken).where(ApiToken.name == name)) is not None:
        raise errors.DUPLICATE_NAME.error(name=name)
    secret, digest, prefix = tokens.new_api_token()
    token = ApiToken(name=name, token_hash=digest, prefix=prefix, user_id=owner.id)
    session.add(token)
    audit.record(
        session,
        "api_token.created",
        actor=actor or owner,
        subject=f"token:{name}",
        address=address,
        prefix=prefix,
    )
    session.commit()
    return token, secret


def authenticate(session: Session, secret: str) -> User:
    """The user an API token acts as; NotAuthenticated if it is unknown or revoked."""
    token = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == tokens.hash_api_token(secret or ""))
    )
    if token is None or token.revoked_at is not None:
        raise errors.INVALID_TOKEN.error()
    if not token.user.active:
        raise errors.TOKEN_OWNER_INACTIVE.error()
    now = utcnow()
    # Write at most once a minute, so busy integrations do not write on every call.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        token.last_used_at = now
        session.commit()
    return token.user


def authenticate_client(session: Session, config, token: str) -> User:
    """The active user a client JWT names; NotAuthenticated saying why it is refused."""
    try:
        user_id = tokens.verify_client_token(
            token,
            secret=config["JWT_SECRET"],
            issuer=config["JWT_ISSUER"],
            audience=config["JWT_AUDIENCE"],
        )
    except tokens.InvalidToken as exc:
        raise errors.INVALID_CLIENT_TOKEN.error(reason=str(exc)) from None
    user = session.get(User, user_id)
    # End this read's transaction (on SQLite it holds the write lock) before the view
    # reads the request body.
    session.commit()
    if user is None:
        raise errors.INVALID_CLIENT_TOKEN.error(reason="unknown user")
    if not user.active:
        raise errors.INVALID_CLIENT_TOKEN.error(reason="account disabled")
    return user


def issue_client_token(
    session: Session, config, user: User, actor: User | None, address: str | None = None
) -> tokens.ClientToken:
    """Sign a client JWT for an active user, and record who asked for it."""
    if not user.active:
        raise errors.USER_INACTIVE.error(email=user.email)
    issued = tokens.issue_client_token(
        user.id,
        secret=config["JWT_SECRET"],
        issuer=config["JWT_ISSUER"],
        audience=config["JWT_AUDIENCE"],
        ttl_s=config["JWT_TTL_S"],
    )
    audit.record(
        session,
        "client_token.issued",
        actor=actor,
        subject=f"user:{user.email}",
        address=address,
        expires_at=issued.expires_at.isoformat(),
    )
    session.commit()
    return issued


def issue_for_email(
    session: Session, config, actor: User, email: str, address: str | None = None
) -> tokens.ClientToken:
    """Sign a client JWT for the user with `email`; only administrators may ask."""
    if actor.role is not Role.ADMIN:
        raise errors.TOKENS_ADMINS_ONLY.error()
    return issue_client_token(session, config, get_by_email(session, email), actor, address)
