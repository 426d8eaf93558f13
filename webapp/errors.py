"""The catalogue: every stable error code once, with its status and wording; the
exceptions that carry them, and their HTML/JSON handlers.

Wordings people read are marked `N_(...)` for the translation catalogue and translated
when the error is made or shown (`ErrorCode.format`), in the language of the request (or
of the recipient, or the school's); /ws-only wordings are for client developers and stay
English.

Like ntfy's errors.go: raise a code through its entry (`raise errors.TITLE_REQUIRED.error()`,
`raise errors.TITLE_TOO_LONG.error(max=200)`), never as a string elsewhere. A code used
in several situations has one entry per wording: the first defines the code, the others
derive from it with `saying`, so each code string is written once. An entry is named
after its code, or, for a code shared by several situations (`validation_failed`,
`forbidden`), after its situation. Every code is listed in docs/errors.md;
tests/test_errors.py keeps the two in step.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum

from flask import Flask, jsonify, make_response, render_template, request
from flask_babel import gettext
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .i18n import N_, translated

log = logging.getLogger(__name__)


class OnSocket(StrEnum):
    """Where a /ws-only code is used (it has no HTTP status)."""

    ERROR = "error message"  # in an `error` message; the socket stays open
    CLOSE = "close reason"  # its wording is the reason of a 1008 close


Status = int | OnSocket | None  # see ErrorCode.status


@dataclass(frozen=True)
class ErrorCode:
    """One stable code, what it answers with and its wording.

    `status` is the HTTP status; OnSocket for a /ws-only code; None for `http_error`,
    which stands for any status Werkzeug raises that has no code of its own. `message`
    may name fields (`"No user with id {user_id}."`), filled in from `values` (format
    syntax: `{name!r}`, `{{` for a brace). Entries are equal when their codes are, so
    every wording of a code is the same key (roster/views.FIELD_FOR_CODE)."""

    code: str
    status: Status = field(compare=False)
    message: str = field(compare=False)

    def saying(self, message: str, *, status: Status = None) -> ErrorCode:
        """The same code with another wording, for another situation (and, where the
        code is answered in two ways, another status; None: the same)."""
        return replace(self, message=message, status=self.status if status is None else status)

    def format(self, /, **values: object) -> str:
        """The wording in the current language, with its fields filled in."""
        return translated(self.message).format(**values)

    def error(self, /, *, details: dict | None = None, **values: object) -> DomainError:
        """The exception to raise: the subclass for this status (for `except` clauses)."""
        return _EXCEPTION_FOR_STATUS.get(self.status, DomainError)(self, details=details, **values)


# HTTP errors Flask, Werkzeug and the extensions raise. "{description}" is Werkzeug's own
# text, which often says what was wrong (e.g. which methods this address takes).
BAD_REQUEST = ErrorCode("bad_request", 400, "{description}")
NOT_AUTHENTICATED = ErrorCode("not_authenticated", 401, "{description}")
FORBIDDEN = ErrorCode("forbidden", 403, "{description}")
NOT_FOUND = ErrorCode("not_found", 404, "{description}")
METHOD_NOT_ALLOWED = ErrorCode("method_not_allowed", 405, "{description}")
PAYLOAD_TOO_LARGE = ErrorCode("payload_too_large", 413, N_("The upload is too large."))
UNSUPPORTED_MEDIA_TYPE = ErrorCode("unsupported_media_type", 415, "{description}")
RATE_LIMITED = ErrorCode(
    "rate_limited", 429, N_("Too many attempts. Please wait a few minutes and try again.")
)
INTERNAL_ERROR = ErrorCode(
    "internal_error", 500, N_("Something went wrong on our side. It has been logged.")
)
HTTP_ERROR = ErrorCode("http_error", None, "{description}")
CSRF_FAILED = ErrorCode(
    "csrf_failed",
    400,
    N_(
        "Your form expired or was sent from elsewhere (missing or stale security token). "
        "Reload the page and try again; nothing was saved."
    ),
)

# Who a request acts as, and whether it may.
SIGN_IN_REQUIRED = NOT_AUTHENTICATED.saying(
    N_("Send 'Authorization: Bearer <API token>', or sign in first.")
)
INVALID_TOKEN = ErrorCode("invalid_token", 401, N_("Invalid or revoked API token."))
TOKEN_OWNER_INACTIVE = INVALID_TOKEN.saying(N_("The API token's owner is deactivated."))
NOT_BEARER = INVALID_TOKEN.saying(N_("Use 'Authorization: Bearer <API token>'."))
ADMINS_ONLY = FORBIDDEN.saying(N_("Only administrators can manage the roster."))
TOKENS_ADMINS_ONLY = FORBIDDEN.saying(N_("Only administrators can issue client tokens."))
STAFF_ONLY = FORBIDDEN.saying(N_("The dashboard is for school staff."))
PRESENCE_STAFF_ONLY = FORBIDDEN.saying(N_("Who is online is for school staff to see."))
PRIVACY_ADMINS_ONLY = FORBIDDEN.saying(
    N_("Only administrators can export or erase a person's data.")
)
AUDIT_ADMINS_ONLY = FORBIDDEN.saying(N_("Only administrators can read the audit log."))

# The JSON API's request bodies and query parameters (api/schemas.py).
JSON_BODY_REQUIRED = UNSUPPORTED_MEDIA_TYPE.saying(
    N_("Send a JSON body with 'Content-Type: application/json'.")
)
INVALID_JSON = ErrorCode("invalid_json", 400, N_("The body must be a JSON object."))
JSON_NOT_TEXT = INVALID_JSON.saying(
    N_("The body's strings must be text: no NUL characters or lone surrogates.")
)
UNKNOWN_FIELD = ErrorCode("unknown_field", 400, N_("Unknown field(s): {fields}."))
UNKNOWN_TARGET = UNKNOWN_FIELD.saying(N_("Unknown target(s): {fields}."))
FIELD_REQUIRED = ErrorCode("validation_failed", 400, N_("The field {field!r} is required."))
FIELD_NOT_STRINGS = FIELD_REQUIRED.saying(N_("The field {field!r} must be a list of strings."))
FIELD_WRONG_TYPE = FIELD_REQUIRED.saying(N_("The field {field!r} must be {expected}."))
FIELD_NOT_DATETIME = FIELD_REQUIRED.saying(N_("The field {field!r} must be an ISO 8601 date-time."))
FIELD_NOT_WHOLE_NUMBER = FIELD_REQUIRED.saying(
    N_("{field!r} must be a whole number from 0 to {max}.")
)
FIELD_NOT_ONE_OF = FIELD_REQUIRED.saying(N_("{field!r} must be one of {choices}."))
BAD_CLI_TARGET = FIELD_REQUIRED.saying(
    N_(
        "--to {target!r}: use class:NAME[:students,guardians,teachers], user:EMAIL, role:ROLE "
        "or everyone."
    )
)
FIELD_NOT_AWARE = FIELD_REQUIRED.saying(
    N_("{field!r} must be an ISO 8601 date-time with a time zone (e.g. 2026-09-01T08:00:00Z).")
)
BAD_CLASS_TARGET = FIELD_REQUIRED.saying(
    N_("Each class target is {{name, audience?: [students, guardians, teachers]}}.")
)
CLASS_TARGETS_NOT_LIST = FIELD_REQUIRED.saying(N_("targets.classes must be a list."))
BAD_DELIVERY_STATE = FIELD_REQUIRED.saying(
    N_("state must be pending, delivered, read or acknowledged.")
)

# People and sign-in (services/users.py).
WEAK_PASSWORD = ErrorCode(
    "weak_password", 400, N_("Passwords need at least {min_length} characters.")
)
INVALID_EMAIL = ErrorCode(
    "invalid_email", 400, N_("{email!r} is not a valid email address: {reason}")
)
INVALID_ROLE = ErrorCode("invalid_role", 400, N_("Unknown role {role!r}; use one of {allowed}."))
NAME_REQUIRED = ErrorCode("name_required", 400, N_("A name is required."))
NAME_TOO_LONG = ErrorCode("name_too_long", 400, N_("Names are at most {max} characters."))
INVALID_LANGUAGE = ErrorCode(
    "invalid_language", 400, N_("Unsupported language {language!r}; use one of {allowed}.")
)
USER_NOT_FOUND = ErrorCode("user_not_found", 404, N_("No user with email {email!r}."))
USER_ID_NOT_FOUND = USER_NOT_FOUND.saying(N_("No user with id {user_id}."))
USERS_NOT_FOUND = USER_NOT_FOUND.saying(N_("No user with email {emails}."))  # several, joined
DUPLICATE_EMAIL = ErrorCode("duplicate_email", 409, N_("A user with email {email} already exists."))
SELF_DEMOTION = ErrorCode(
    "self_demotion", 400, N_("You cannot remove your own administrator role.")
)
SELF_DEACTIVATION = ErrorCode(
    "self_deactivation", 400, N_("You cannot deactivate your own account.")
)
SELF_ERASURE = ErrorCode("self_erasure", 400, N_("You cannot erase your own account."))
ALREADY_ERASED = ErrorCode("already_erased", 409, N_("This person was erased already."))
ERASED_ACCOUNT = ALREADY_ERASED.saying(
    N_("This person was erased: the account cannot be changed or reactivated.")
)
ERASURE_NOT_CONFIRMED = ErrorCode(
    "erasure_not_confirmed",
    400,
    N_("Type the person's e-mail address exactly to confirm: erasing cannot be undone."),
)
SIGNIN_FAILED = ErrorCode("signin_failed", 401, N_("Wrong email or password."))
ACCOUNT_DISABLED = ErrorCode(
    "account_disabled", 401, N_("This account is disabled. Please contact the school office.")
)
SIGNIN_BUSY = ErrorCode(
    "signin_busy",
    503,
    N_("Many people are signing in right now. Please try again in a few seconds."),
)
NO_ADMIN = ErrorCode("no_admin", 404, N_("There is no administrator yet: run create-admin first."))
NOT_EMPTY = ErrorCode(
    "not_empty",
    409,
    N_("The database already has users; the demo school is only loaded into an empty database."),
)

# API tokens and client JWTs (services/api_tokens.py).
INVALID_NAME = ErrorCode("invalid_name", 400, N_("Token names are 1-100 characters."))
OWNER_NOT_ADMIN = ErrorCode("owner_not_admin", 400, N_("API tokens act as an administrator."))
DUPLICATE_NAME = ErrorCode("duplicate_name", 409, N_("An API token named {name!r} already exists."))
USER_INACTIVE = ErrorCode("user_inactive", 400, N_("{email} is deactivated."))

# Classes and guardians (services/classes.py).
INVALID_CLASS_NAME = ErrorCode(
    "invalid_class_name",
    400,
    N_("Invalid class name {name!r}: use 1-64 letters, digits, spaces, '.', '_' or '-'."),
)
CLASS_NOT_FOUND = ErrorCode("class_not_found", 404, N_("No class named {name!r}."))
CLASS_ID_NOT_FOUND = CLASS_NOT_FOUND.saying(N_("No class with id {class_id}."))
DUPLICATE_CLASS = ErrorCode("duplicate_class", 409, N_("A class named {name} already exists."))
INVALID_MEMBER = ErrorCode(
    "invalid_member", 400, N_("{email} is a {role}; only students and teachers join classes.")
)
ALREADY_MEMBER = ErrorCode("already_member", 409, N_("{email} is already in {class_name}."))
NOT_MEMBER = ErrorCode("not_member", 404, N_("That person is not in this class."))
NOT_A_GUARDIAN = ErrorCode("not_a_guardian", 400, N_("{email} is a {role}, not a guardian."))
NOT_A_STUDENT = ErrorCode("not_a_student", 400, N_("{email} is a {role}, not a student."))
ALREADY_LINKED = ErrorCode(
    "already_linked", 409, N_("{guardian} is already a guardian of {student}.")
)
NOT_LINKED = ErrorCode("not_linked", 404, N_("No such guardian link."))

# Announcements: the audience (services/audience.py), the draft and sending
# (services/notifications.py), receipts and the status page.
NOT_A_SENDER = ErrorCode("not_a_sender", 403, N_("Only school staff can send announcements."))
EMPTY_AUDIENCE = ErrorCode("empty_audience", 400, N_("Choose at least one recipient."))
NO_ACTIVE_RECIPIENTS = EMPTY_AUDIENCE.saying(
    N_("Nobody is in that audience (no active recipients).")
)
INVALID_AUDIENCE = ErrorCode(
    "invalid_audience", 400, N_("Class {name!r}: audience must be a non-empty list of {allowed}.")
)
UNKNOWN_AUDIENCE = INVALID_AUDIENCE.saying(
    N_("Class {name!r}: unknown audience {unknown}; use {allowed}.")
)
AUDIENCE_FORBIDDEN = ErrorCode(
    "audience_forbidden",
    403,
    N_("Only administrators can send to whole roles or the whole school."),
)
NOT_YOUR_CLASS = AUDIENCE_FORBIDDEN.saying(
    N_("You can only send to your own classes, not {class_name}.")
)
NOT_YOUR_PEOPLE = AUDIENCE_FORBIDDEN.saying(
    N_("You can only send to people in your classes, not {emails}.")
)
TITLE_REQUIRED = ErrorCode("title_required", 400, N_("A title is required."))
TITLE_TOO_LONG = ErrorCode("title_too_long", 400, N_("Titles are at most {max} characters."))
BODY_REQUIRED = ErrorCode("body_required", 400, N_("A message is required."))
BODY_TOO_LONG = ErrorCode(
    "body_too_long", 400, N_("Messages are at most {max} characters (this one has {length}).")
)
INVALID_PRIORITY = ErrorCode(
    "invalid_priority", 400, N_("Priority must be normal, urgent or emergency.")
)
INVALID_LINK = ErrorCode("invalid_link", 400, N_("The link must be an http(s) address."))
INVALID_EXPIRES_AT = ErrorCode(
    "invalid_expires_at", 400, N_("expires_at needs a time zone (e.g. 2026-12-01T08:00:00Z).")
)
EXPIRY_IN_PAST = INVALID_EXPIRES_AT.saying(N_("expires_at must be in the future."))
EXPIRY_NOT_A_TIME = INVALID_EXPIRES_AT.saying(N_("The expiry is not a valid date and time."))
EXPIRY_BEFORE_SEND = INVALID_EXPIRES_AT.saying(N_("expires_at must come after send_at."))
INVALID_SEND_AT = ErrorCode(
    "invalid_send_at", 400, N_("send_at needs a time zone (e.g. 2026-12-01T08:00:00Z).")
)
SEND_AT_IN_PAST = INVALID_SEND_AT.saying(N_("send_at must be in the future."))
SEND_AT_TOO_FAR = INVALID_SEND_AT.saying(N_("send_at can be at most {days} days ahead."))
SEND_AT_NOT_A_TIME = INVALID_SEND_AT.saying(N_("The send time is not a valid date and time."))
INVALID_CONFIRM_BY = ErrorCode(
    "invalid_confirm_by", 400, N_("confirm_by needs a time zone (e.g. 2026-12-01T08:00:00Z).")
)
CONFIRM_BY_IN_PAST = INVALID_CONFIRM_BY.saying(N_("confirm_by must be in the future."))
CONFIRM_BY_BEFORE_SEND = INVALID_CONFIRM_BY.saying(N_("confirm_by must come after send_at."))
CONFIRM_BY_NOT_A_TIME = INVALID_CONFIRM_BY.saying(
    N_("The confirmation deadline is not a valid date and time.")
)
INVALID_REMIND_AT = ErrorCode(
    "invalid_remind_at",
    400,
    N_(
        "Reminders need a confirmation deadline, and each must come between the send and the"
        " deadline (at most {max}, each with a time zone)."
    ),
)
AUTHOR_GONE = ErrorCode(
    "author_gone", 409, N_("Its author's account was deactivated, so it was not sent.")
)
NOT_SCHEDULED = ErrorCode(
    "not_scheduled", 409, N_("This announcement has already been sent: send_at cannot change.")
)
ALREADY_WITHDRAWN = ErrorCode("already_withdrawn", 409, N_("This announcement was withdrawn."))
ALREADY_EXPIRED = ErrorCode("already_expired", 409, N_("This announcement has expired."))
ALREADY_OVER = ErrorCode("already_over", 409, N_("This emergency is over (all clear)."))
NOTHING_TO_CHANGE = ErrorCode("nothing_to_change", 400, N_("Nothing would change."))
NOT_ASKING_CONFIRMATION = ErrorCode(
    "not_asking_confirmation", 409, N_("This announcement does not ask for confirmation.")
)
CANNOT_REMIND = ErrorCode(
    "cannot_remind", 409, N_("Only a sent announcement that is still live can be reminded.")
)
EVERYONE_CONFIRMED = ErrorCode("everyone_confirmed", 409, N_("Everyone has confirmed already."))
REMINDED_RECENTLY = ErrorCode(
    "reminded_recently", 429, N_("A reminder just went out; try again in {minutes} minutes.")
)
NOT_YOUR_NOTIFICATION = ErrorCode(
    "not_your_notification",
    403,
    N_("Only its author or an administrator can change this announcement."),
)
# Emergencies: templates, all clear (services/emergency_templates.py, emergencies.py) ----
NOT_AN_EMERGENCY = ErrorCode(
    "not_an_emergency", 409, N_("Only an emergency can be given the all clear.")
)
EMERGENCY_NOT_SENT = ErrorCode(
    "emergency_not_sent", 409, N_("This emergency has not been sent yet, so it cannot end.")
)
EMERGENCY_OVER = ErrorCode(
    "emergency_over", 409, N_("This emergency has already been given the all clear.")
)
EMERGENCY_EXPIRED = EMERGENCY_OVER.saying(N_("This emergency has expired: it is no longer shown."))
ALL_CLEAR_TOO_LONG = ErrorCode(
    "all_clear_too_long", 400, N_("The all-clear message can be at most {max} characters.")
)
TEMPLATE_NOT_FOUND = ErrorCode(
    "template_not_found", 404, N_("There is no emergency template {key!r}.")
)
INVALID_TEMPLATE_NAME = ErrorCode(
    "invalid_template_name", 400, N_("A template's button label must be 1 to {max} characters.")
)
TEMPLATES_ADMINS_ONLY = FORBIDDEN.saying(N_("Only administrators can edit emergency templates."))
# ------------------------------------------------------------------------------------------
INVALID_IDEMPOTENCY_KEY = ErrorCode(
    "invalid_idempotency_key", 400, N_("Idempotency-Key must be 1-255 characters.")
)
IDEMPOTENCY_KEY_REUSED = ErrorCode(
    "idempotency_key_reused",
    409,
    N_("This Idempotency-Key was already used for a different announcement."),
)
NOTIFICATION_NOT_FOUND = ErrorCode(
    "notification_not_found", 404, N_("No announcement with id {id}.")
)
INVALID_RECEIPT_TOKEN = ErrorCode(
    "invalid_receipt_token", 400, N_("This receipt token is not valid.")
)
RECEIPT_TOKEN_EXPIRED = ErrorCode(
    "receipt_token_expired", 410, N_("This receipt token has expired.")
)
INVALID_STATE = ErrorCode(
    "invalid_state", 400, N_("state must be delivered, read or acknowledged.")
)
INVALID_DEVICE_STATE = INVALID_STATE.saying(N_("A device reports delivered or read."))
INVALID_STATE_FILTER = INVALID_STATE.saying(
    N_("state must be all, pending, delivered, read, acknowledged or unconfirmed.")
)

# Signed links in e-mails (tokens.py, services/links.py, links/views.py). Their pages
# always offer signing in instead.
INVALID_LINK_TOKEN = ErrorCode(
    "invalid_link_token",
    400,
    N_("This link is not valid (it may have been cut short). Sign in to see the announcement."),
)
LINK_EXPIRED = ErrorCode(
    "link_expired", 410, N_("This link has expired. Sign in to see the announcement.")
)
NOTIFICATION_EXPIRED = LINK_EXPIRED.saying(
    N_("This announcement has expired, and its links with it.")
)
LINK_USED = ErrorCode(
    "link_used", 410, N_("This link has already been used. Sign in to see the announcement.")
)
NOTIFICATION_WITHDRAWN = ErrorCode(
    "notification_withdrawn", 410, N_("This announcement was withdrawn by the school.")
)
# Web Push: subscriptions from browsers (services/push.py) and who may make them
# (api/auth.py: a client JWT reaches only a person's own inbox and devices).
INVALID_PUSH_ENDPOINT = ErrorCode(
    "invalid_push_endpoint",
    422,
    N_("The endpoint must be an https URL of at most {max} characters."),
)
PUSH_SERVICE_NOT_ALLOWED = ErrorCode(
    "push_service_not_allowed", 422, N_("{origin} is not a push service Schoolbell sends to.")
)
INVALID_PUSH_KEY = ErrorCode(
    "invalid_push_key", 422, N_("keys.p256dh must be a P-256 public key (65 bytes, base64url).")
)
INVALID_PUSH_AUTH = INVALID_PUSH_KEY.saying(N_("keys.auth must be 16 bytes, base64url."))
PUSH_SUBSCRIPTION_NOT_FOUND = ErrorCode(
    "push_subscription_not_found", 404, N_("None of your devices has that push endpoint.")
)
DEVICE_NOT_FOUND = PUSH_SUBSCRIPTION_NOT_FOUND.saying(N_("None of your devices has id {id}."))
INVALID_CLIENT_TOKEN = INVALID_TOKEN.saying(N_("The client token was refused: {reason}."))
CLIENT_TOKEN_NOT_ALLOWED = ErrorCode(
    "client_token_not_allowed",
    403,
    N_("A client token reaches only your own inbox and push subscriptions; use an API token."),
)

# /metrics (webapp/monitoring, metrics.scrape_refusal): Prometheus scrapers.
METRICS_TOKEN_REQUIRED = ErrorCode(
    "metrics_token_required", 401, N_("Send the metrics token: 'Authorization: Bearer <token>'.")
)
METRICS_ADDRESS_FORBIDDEN = ErrorCode(
    "metrics_address_forbidden", 403, N_("Metrics are not served to this address.")
)

# /ws, refused before the handshake (an HTTP answer; realtime/admission.py, session.py).
WEBSOCKET_REQUIRED = ErrorCode("websocket_required", 400, N_("This address takes WebSockets only."))
ORIGIN_FORBIDDEN = ErrorCode("origin_forbidden", 403, N_("This origin may not open a socket."))
SHUTTING_DOWN = ErrorCode("shutting_down", 503, N_("The server is restarting; retry shortly."))
TOO_MANY_CONNECTIONS = ErrorCode(
    "too_many_connections", 503, N_("The server is full; retry shortly.")
)
TOO_MANY_UNAUTHENTICATED = ErrorCode(
    "too_many_unauthenticated",
    429,
    N_("Too many sockets from this address have not signed in yet."),
)
TOO_MANY_FAILED_HANDSHAKES = ErrorCode(
    "too_many_failed_handshakes",
    429,
    N_("Too many sockets from this address failed to sign in; retry later."),
)
TOO_MANY_TABS = TOO_MANY_CONNECTIONS.saying(N_("Too many open tabs for this user."), status=429)
BAD_HANDSHAKE = ErrorCode("bad_handshake", 400, N_("Not a valid WebSocket handshake."))

# /ws, a dashboard's ?watch= (realtime/topics.py, dashboard/components.py): raised as
# domain errors; on the socket the wording is the reason of the 1008 close.
BAD_WATCH = ErrorCode("bad_watch", 400, N_("Unknown topic {topic!r}."))
TOO_MANY_TOPICS = BAD_WATCH.saying(N_("At most {max} topics per socket."))
WATCH_FORBIDDEN = ErrorCode("watch_forbidden", 403, N_("Only staff can watch live status."))

# /ws, `error` messages: a client message was refused, the socket stays open
# (realtime/protocol.py, realtime/session.py).
NOT_UTF8_JSON = INVALID_JSON.saying("messages are UTF-8 JSON text", status=OnSocket.ERROR)
NOT_JSON = INVALID_JSON.saying("messages are JSON objects", status=OnSocket.ERROR)
INVALID_MESSAGE = ErrorCode(
    "invalid_message", OnSocket.ERROR, "a message is an object with a 'type'"
)
NOT_AN_ID = INVALID_MESSAGE.saying("'{field}' must be an id (0 to {max})")
BAD_AUTH_TOKEN = INVALID_MESSAGE.saying("'token' must be a non-empty string")
BAD_ACK_STATE = INVALID_MESSAGE.saying("'state' must be one of {states}")
BAD_TAB_COUNT = INVALID_MESSAGE.saying("'count' must be a whole number from 1 to {max}")
BAD_ANSWER = INVALID_MESSAGE.saying("'status' must be one of {answers}")
BAD_ANSWER_TEXT = INVALID_MESSAGE.saying("'text' must be a string of at most {max} characters")
BAD_OPEN_ALERTS = INVALID_MESSAGE.saying(
    "'open' must be a list of at most {max} [id, revision] pairs"
)
UNKNOWN_TYPE = ErrorCode("unknown_type", OnSocket.ERROR, "unknown message type {type!r}")
UNKNOWN_NOTIFICATION = ErrorCode(
    "unknown_notification", OnSocket.ERROR, "notification {id} was not sent to you"
)
UNKNOWN_EMERGENCY = ErrorCode(
    "unknown_emergency",
    OnSocket.ERROR,
    "notification {id} is no emergency of yours that is still going on",
)
MESSAGES_RATE_LIMITED = RATE_LIMITED.saying("too many messages", status=OnSocket.ERROR)
API_RATE_LIMITED = RATE_LIMITED.saying(
    N_("Too many requests with these credentials; retry after Retry-After seconds.")
)
ALREADY_AUTHENTICATED = ErrorCode(
    "already_authenticated", OnSocket.ERROR, "this socket is already authenticated"
)

# /ws, reasons of a 1008 close (realtime/session.py, admission.py). Only the wording is on the wire.
AUTH_REQUIRED = ErrorCode("auth_required", OnSocket.CLOSE, "authentication required")
AUTH_TIMEOUT = ErrorCode("auth_timeout", OnSocket.CLOSE, "authentication timeout")
MESSAGE_FLOOD = ErrorCode("message_flood", OnSocket.CLOSE, "message flood")
ACCOUNT_DISABLED_CLOSE = ACCOUNT_DISABLED.saying("account disabled", status=OnSocket.CLOSE)

CATALOGUE: tuple[ErrorCode, ...] = tuple(
    entry for entry in list(globals().values()) if isinstance(entry, ErrorCode)
)

# Werkzeug's own descriptions of the statuses above, for the catalogue: `_http` shows
# them translated (tests/test_translations.py checks they are still Werkzeug's words).
WERKZEUG_DESCRIPTIONS = (
    N_("The browser (or proxy) sent a request that this server could not understand."),
    N_(
        "The server could not verify that you are authorized to access the URL requested. You"
        " either supplied the wrong credentials (e.g. a bad password), or your browser doesn't"
        " understand how to supply the credentials required."
    ),
    N_(
        "You don't have the permission to access the requested resource. It is either"
        " read-protected or not readable by the server."
    ),
    N_(
        "The requested URL was not found on the server. If you entered the URL manually please"
        " check your spelling and try again."
    ),
    N_("The method is not allowed for the requested URL."),
    N_("The server does not support the media type transmitted in the request."),
)

# Werkzeug's HTTP errors, by status (any other status: HTTP_ERROR).
HTTP_CODES: dict[Status, ErrorCode] = {
    entry.status: entry
    for entry in (
        BAD_REQUEST,
        NOT_AUTHENTICATED,
        FORBIDDEN,
        NOT_FOUND,
        METHOD_NOT_ALLOWED,
        PAYLOAD_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        RATE_LIMITED,
        INTERNAL_ERROR,
    )
}


class DomainError(Exception):
    """A rule of Schoolbell was broken. `kind` is its catalogue entry; its code, status
    and wording (`message`) are part of the API. Made by `kind.error(...)`, which picks
    the subclass for the status."""

    def __init__(self, kind: ErrorCode, /, *, details: dict | None = None, **values: object):
        if not isinstance(kind.status, int) or type(self) is not _EXCEPTION_FOR_STATUS.get(
            kind.status, DomainError
        ):
            raise TypeError(f"{kind.code} ({kind.status}) is not a {type(self).__name__}")
        self.kind = kind
        self.code = kind.code
        self.status: int = kind.status
        self.message = kind.format(**values)
        self.details = details or {}
        super().__init__(self.message)


class ValidationFailed(DomainError):
    """400: the input breaks a rule."""


class NotAuthenticated(DomainError):
    """401: who is asking is unknown, or the credentials are wrong."""


class Forbidden(DomainError):
    """403: known, but not allowed."""


class NotFound(DomainError):
    """404: no such thing (or not one this user may see)."""


class Conflict(DomainError):
    """409: it exists already, or clashes with what does."""


class Busy(DomainError):
    """503: too much of a bounded resource is in use right now; the client should come
    back after `retry_after_s` (sent as Retry-After)."""

    def __init__(self, kind: ErrorCode, /, *, retry_after_s: int = 5, **values: object):
        super().__init__(kind, **values)
        self.retry_after_s = retry_after_s


_EXCEPTION_FOR_STATUS: dict[Status, type[DomainError]] = {
    400: ValidationFailed,
    401: NotAuthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    503: Busy,
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


def respond(kind: ErrorCode, /, *, json: bool = False, **values: object):
    """Render a catalogue entry with an HTTP status, in its wording, as error_response."""
    if not isinstance(kind.status, int):
        raise TypeError(f"{kind.code} has no HTTP status")
    return error_response(kind.status, kind.code, kind.format(**values), json=json)


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
        return respond(CSRF_FAILED)

    @app.errorhandler(RateLimitExceeded)
    def _limited(exc: RateLimitExceeded):
        from .extensions import limiter

        api = request.blueprint == "api"
        response = make_response(respond(API_RATE_LIMITED if api else RATE_LIMITED, json=api))
        breached = limiter.current_limit  # the limit this request ran into
        wait_s = math.ceil(breached.reset_at - time.time()) if breached else 60
        response.headers["Retry-After"] = str(max(1, wait_s))
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        kind = HTTP_CODES.get(status, HTTP_ERROR)
        message = kind.format(description=gettext(exc.description or exc.name))
        return error_response(status, kind.code, message)

    @app.errorhandler(Exception)
    def _crash(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        _rollback()
        return respond(INTERNAL_ERROR)
