"""Who an API request acts as: a Bearer API token, a client JWT (on a person's own
inbox and push subscriptions only), or the signed-in session (with CSRF).

Flask-WTF's global check runs before any blueprint hook, so the blueprint is exempted
from it and `authenticate` applies it again to cookie-authenticated requests only. A
request carrying `Authorization: Bearer` is not CSRF-able: browsers never add that header
to a cross-site request on their own. The token itself is never logged.
"""

from __future__ import annotations

import hashlib

from flask import current_app, g, request
from flask_login import current_user

from .. import errors, tokens
from ..db import get_session
from ..errors import NotAuthenticated, error_response
from ..extensions import client_address, csrf, limiter
from ..models import User
from ..services import api_tokens
from . import bp

csrf.exempt(bp)

# A client JWT is made for one person's embedded page or tab (`issue-token`, POST
# /tokens): it reaches only that person's own things, never what an API token may do.
CLIENT_TOKEN_ENDPOINTS = {
    "api.push_key",
    "api.push_subscribe",
    "api.push_unsubscribe",
    "api.my_notifications",
}
# Authenticated by a signed token in the request's body (a service worker's receipt):
# no session, API token or CSRF token.
BODY_TOKEN_ENDPOINTS = {"api.device_receipt"}


def api_caller() -> str:
    """Whom the API rate limit counts against: the bearer token (a digest of it: it is
    checked only after the limit, and never kept), else the signed-in person, else the
    address. Counted in the rate-limit storage, so across every process with Redis."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return "token:" + hashlib.sha256(header[7:].strip().encode()).hexdigest()[:32]
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    return "address:" + client_address()


limiter.limit(lambda: current_app.config["API_RATE_LIMIT"], key_func=api_caller, scope="api")(bp)


@bp.before_request
def authenticate() -> None:
    """Set the acting user from the Bearer token, or from the session after CSRF."""
    if request.endpoint in BODY_TOKEN_ENDPOINTS:
        return  # the view checks the token its body carries
    header = request.headers.get("Authorization")
    if header is not None:
        token = bearer_token(header)
        if not tokens.is_client_token(token):
            g.api_user = api_tokens.authenticate(get_session(), token)
            return
        user = api_tokens.authenticate_client(get_session(), current_app.config, token)
        if request.endpoint not in CLIENT_TOKEN_ENDPOINTS:
            raise errors.CLIENT_TOKEN_NOT_ALLOWED.error()
        g.api_user = user
        return
    if not current_user.is_authenticated:
        raise errors.SIGN_IN_REQUIRED.error()
    csrf.protect()  # checks unsafe methods only (WTF_CSRF_METHODS)
    g.api_user = current_user._get_current_object()


def bearer_token(header: str) -> str:
    """The token of an 'Authorization: Bearer <token>' header, or NotAuthenticated."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.NOT_BEARER.error()
    return token.strip()


def api_user() -> User:
    """The user the current API request acts as."""
    return g.api_user


@bp.errorhandler(NotAuthenticated)
def unauthorised(exc: NotAuthenticated):
    """401 with the WWW-Authenticate challenge that RFC 6750 asks for."""
    get_session().rollback()
    response, status = error_response(exc.status, exc.code, exc.message, exc.details)
    challenge = 'Bearer realm="schoolbell"'
    if exc.kind == errors.INVALID_TOKEN:  # any of its wordings
        challenge += ', error="invalid_token"'
    response.headers["WWW-Authenticate"] = challenge
    return response, status
