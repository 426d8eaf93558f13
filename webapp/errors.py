"""Domain errors with an HTTP status and a stable code, and their HTML/JSON handlers."""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, jsonify, make_response, render_template, request
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class DomainError(Exception):
    """A rule of Schoolbell was broken; `status` and `code` are part of the API."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}


class ValidationFailed(DomainError):
    status, code = 400, "validation_failed"


class NotAuthenticated(DomainError):
    status, code = 401, "not_authenticated"


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class NotFound(DomainError):
    status, code = 404, "not_found"


class Conflict(DomainError):
    status, code = 409, "conflict"


class Busy(DomainError):
    """Too much of a bounded resource is in use right now; the client should come back
    after `retry_after_s` (sent as Retry-After)."""

    status, code = 503, "busy"

    def __init__(self, message: str, *, code: str | None = None, retry_after_s: int = 5):
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


# Stable codes for HTTP errors raised by Flask/Werkzeug itself.
HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
}

FRIENDLY = {
    413: "The upload is too large.",
    429: "Too many attempts. Please wait a few minutes and try again.",
    500: "Something went wrong on our side. It has been logged.",
}


def wants_json() -> bool:
    """API paths, and clients that ask for JSON, get JSON errors."""
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and not request.accept_mimetypes.accept_html


def error_response(
    status: int, code: str, message: str, details: dict | None = None, *, json: bool = False
):
    """Render one error as JSON (always with `json`, else as the client prefers) or as
    the HTML error page."""
    if json or wants_json():
        body = {"error": {"code": code, "message": message}}
        if details:
            body["error"]["details"] = details
        return jsonify(body), status
    return render_template("error.html", status=status, code=code, message=message), status


def _rollback() -> None:
    from .db import get_session

    get_session().rollback()


def register_handlers(app: Flask) -> None:
    """Install the handlers: domain errors, CSRF, rate limits, HTTP errors, crashes."""

    @app.errorhandler(DomainError)
    def _domain(exc: DomainError):
        _rollback()
        response = make_response(error_response(exc.status, exc.code, exc.message, exc.details))
        if isinstance(exc, Busy):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        message = (
            "Your form expired or was sent from elsewhere (missing or stale security "
            "token). Reload the page and try again; nothing was saved."
        )
        return error_response(400, "csrf_failed", message)

    @app.errorhandler(RateLimitExceeded)
    def _limited(exc: RateLimitExceeded):
        from .extensions import limiter

        response = make_response(error_response(429, "rate_limited", FRIENDLY[429]))
        breached = limiter.current_limit  # the limit this request ran into
        wait_s = math.ceil(breached.reset_at - time.time()) if breached else 60
        response.headers["Retry-After"] = str(max(1, wait_s))
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        code = HTTP_CODES.get(status, "http_error")
        return error_response(status, code, FRIENDLY.get(status, exc.description or exc.name))

    @app.errorhandler(Exception)
    def _crash(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        _rollback()
        return error_response(500, "internal_error", FRIENDLY[500])
