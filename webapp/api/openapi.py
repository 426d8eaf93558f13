"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json.

Built from the app itself wherever the app already says it, so there is one definition
per rule: paths, methods and path parameters come from `app.url_map`; an operation's
description is its view's docstring; request bodies are the `Field` tables of
api/schemas.py that the views check bodies against; enums are the models' enums; error
codes, statuses and wordings are entries of the catalogue (webapp/errors.py).

What only this module says is, per view, which body it takes and answers, and which
catalogue entries it can answer with: `OPERATIONS`, keyed by (endpoint, method). To
describe a new endpoint, add one `Operation` there (and any new response schema to
`SCHEMAS`); tests/test_openapi.py fails while an /api/v1 rule has no entry, or an entry
names no rule.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter, Rule

from .. import errors
from ..db import MAX_ID
from ..errors import ErrorCode
from ..models import Answer, DeliveryState, MemberRole, Priority, Role
from ..services.audience import CLASS_AUDIENCES
from ..services.notifications import Stage
from ..services.push import DEVICE_STATES
from ..services.users import LANGUAGES, MIN_PASSWORD_LENGTH
from . import schemas
from .schemas import Field

PREFIX = "/api/v1"
JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    """A reference to a schema in components/schemas."""
    return {"$ref": f"#/components/schemas/{name}"}


def values(members: Iterable[Enum]) -> list[str]:
    """The wire values of an enum (or of some of its members)."""
    return [member.value for member in members]


# Request bodies: the `Field` tables, plus what a Field does not say (enums, formats) -----
KIND_TYPES = {str: "string", bool: "boolean", dict: "object", float: "number", list: "array"}
DATE_TIME = {"type": "string", "format": "date-time"}

# What the services check beyond a field's type (their errors are listed per operation).
FIELD_DETAILS: dict[str, dict[str, Any]] = {
    "email": {"format": "email"},
    "role": {"enum": values(Role)},
    "language": {"enum": list(LANGUAGES)},
    "password": {"minLength": MIN_PASSWORD_LENGTH},
    "priority": {"enum": values(Priority)},
    "expires_at": DATE_TIME,
    "send_at": DATE_TIME,
    "confirm_by": DATE_TIME,
    "remind_at": {"items": DATE_TIME},
    "link": {"format": "uri"},
    "expirationTime": {"description": "ms since 1970 (accepted, not kept)"},
    "state": {"enum": values(DEVICE_STATES)},  # a device's receipt
}


def field_schema(f: Field, details: dict[str, Any]) -> dict[str, Any]:
    """One body field as JSON Schema: its kind (list fields are lists of strings) with
    `details`; null allowed where it is optional (the views treat null as absent)."""
    schema: dict[str, Any] = {"type": KIND_TYPES[f.kind]}
    if f.kind is list:
        schema["items"] = {"type": "string"}
    schema |= details
    if not f.required:
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    return schema


def body_schema(
    fields: dict[str, Field], nested: dict[str, dict[str, Field]] | None = None
) -> dict[str, Any]:
    """A JSON object as schemas.json_body(fields) checks it: known names only, types,
    required ones present. `nested` gives the Field table of object-valued fields."""
    nested = nested or {}
    properties = {
        name: field_schema(
            f, body_schema(nested[name]) if name in nested else FIELD_DETAILS.get(name, {})
        )
        for name, f in fields.items()
    }
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    required = [name for name, f in fields.items() if f.required]
    if required:
        schema["required"] = required
    return schema


def targets_schema() -> dict[str, Any]:
    """`targets`: schemas.TARGET_FIELDS, where a class is a name or {name, audience}."""
    schema = body_schema(schemas.TARGET_FIELDS)
    schema["properties"]["roles"]["items"] = {"type": "string", "enum": values(Role)}
    schema["properties"]["users"]["items"] = {"type": "string", "format": "email"}
    schema["properties"]["classes"]["items"] = {
        "oneOf": [
            {"type": "string"},
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "audience": {
                        "type": ["array", "null"],
                        "items": {"type": "string", "enum": list(CLASS_AUDIENCES)},
                        "minItems": 1,
                        "description": "default: students",
                    },
                },
                "required": ["name"],
                "additionalProperties": False,
            },
        ]
    }
    return schema


def with_targets(fields: dict[str, Field]) -> dict[str, Any]:
    """A body whose `targets` is described by targets_schema()."""
    schema = body_schema(fields)
    nullable = not fields["targets"].required
    schema["properties"]["targets"] = (
        {"oneOf": [ref("Targets"), {"type": "null"}]} if nullable else ref("Targets")
    )
    return schema


# Response bodies -------------------------------------------------------------------------
def obj(properties: dict[str, Any], optional: Iterable[str] = ()) -> dict[str, Any]:
    """A response object: every property present unless `optional`; nothing else."""
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in set(optional)],
        "additionalProperties": False,
    }


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema, or null."""
    return {"anyOf": [schema, {"type": "null"}]}


STRING, INTEGER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
COUNT = {"type": "integer", "minimum": 0}
WHEN, MAYBE_WHEN = DATE_TIME, nullable(DATE_TIME)
STAGE = {"type": "string", "enum": values(Stage)}
STATE = {"type": "string", "enum": values(DeliveryState)}
PRIORITY = {"type": "string", "enum": values(Priority)}
ROLE = {"type": "string", "enum": values(Role)}
TALLY = obj({"online": COUNT, "total": COUNT})

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": obj(
        {
            "error": obj(
                {
                    "code": {"type": "string", "description": "stable; see docs/errors.md"},
                    "message": {"type": "string", "description": "for people; may change"},
                    "details": {"type": "object", "description": "e.g. field, fields"},
                },
                optional=["details"],
            )
        }
    ),
    "Targets": targets_schema(),
    "User": obj(
        {
            "id": ID,
            "email": STRING,
            "name": STRING,
            "role": ROLE,
            "language": nullable({"type": "string", "enum": list(LANGUAGES)}),
            "active": BOOLEAN,
            "classes": {
                "type": "array",
                "items": obj(
                    {"name": STRING, "role": {"type": "string", "enum": values(MemberRole)}}
                ),
            },
            "guardian_of": {"type": "array", "items": STRING, "description": "students' emails"},
            "created_at": WHEN,
        }
    ),
    "Class": obj({"id": ID, "name": STRING, "created_at": WHEN}),
    "ClientToken": obj({"token": STRING, "expires_at": WHEN}),
    "Presence": obj(
        {
            "online": COUNT,
            "total": COUNT,
            "roles": {"type": "array", "items": obj({"role": ROLE, **TALLY["properties"]})},
            "classes": {"type": "array", "items": obj({"name": STRING, **TALLY["properties"]})},
            "users": {
                "type": "array",
                "items": obj(
                    {"email": STRING, "name": STRING, "role": ROLE, "tabs": COUNT, "since": WHEN}
                ),
            },
        }
    ),
    "Sent": obj({"id": ID, "recipient_count": COUNT, "stage": STAGE, "send_at": MAYBE_WHEN}),
    "NotificationList": obj(
        {
            "notifications": {
                "type": "array",
                "items": obj(
                    {
                        "id": ID,
                        "stage": STAGE,
                        "title": STRING,
                        "priority": PRIORITY,
                        "require_ack": BOOLEAN,
                        "drill": BOOLEAN,
                        "author": nullable(STRING),
                        "author_name": nullable(STRING),
                        "created_at": WHEN,
                        "send_at": MAYBE_WHEN,
                        "sent_at": MAYBE_WHEN,
                        "expires_at": MAYBE_WHEN,
                        "withdrawn_at": MAYBE_WHEN,
                        "recipient_count": COUNT,
                        "read": COUNT,
                        "acknowledged": COUNT,
                    }
                ),
            },
            "next_cursor": nullable(
                {"type": "string", "description": "pass as ?cursor= for the next page"}
            ),
        }
    ),
    # A person's export (services/privacy.py): the top level is fixed; the entries are
    # described in the README's "Data protection" section and may gain fields.
    "PersonExport": {
        "type": "object",
        "properties": {
            "format": STRING,
            "exported_at": WHEN,
            "profile": {"type": "object"},
            **{
                name: {"type": "array", "items": {"type": "object"}}
                for name in (
                    "classes",
                    "guardians",
                    "guardian_of",
                    "received",
                    "devices",
                    "api_tokens",
                    "sent",
                    "activity",
                )
            },
        },
        "required": [
            "format",
            "exported_at",
            "profile",
            "classes",
            "guardians",
            "guardian_of",
            "received",
            "devices",
            "api_tokens",
            "sent",
            "activity",
        ],
    },
    "Erased": obj({"id": ID, "email": STRING, "erased_at": WHEN}),
    "Notification": obj(
        {
            "id": ID,
            "stage": STAGE,
            "revision": INTEGER,
            "title": STRING,
            "body": {"type": "string", "description": "Markdown, as sent"},
            "body_html": {"type": "string", "description": "rendered and sanitised"},
            "priority": PRIORITY,
            "require_ack": BOOLEAN,
            "drill": BOOLEAN,
            "link": nullable(STRING),
            "author": nullable({"type": "string", "description": "the author's email"}),
            "created_at": WHEN,
            "send_at": MAYBE_WHEN,
            "sent_at": MAYBE_WHEN,
            "late": BOOLEAN,
            "send_error": nullable(STRING),
            "edited_at": MAYBE_WHEN,
            "expires_at": MAYBE_WHEN,
            "confirm_by": MAYBE_WHEN,
            "remind_at": {"type": "array", "items": STRING},
            "withdrawn_at": MAYBE_WHEN,
            "all_clear_at": MAYBE_WHEN,
            "recipient_count": COUNT,
            "counts": obj({state: COUNT for state in values(DeliveryState)}),
            "channels": obj(
                {name: COUNT for name in ("tab", "push", "email", "not_yet", "pushed", "emailed")}
            ),
            # Emergencies only (schemas.emergency_json):
            "all_clear_message": nullable(STRING),
            "roll_call": obj({"safe": COUNT, "help": COUNT, "no_answer": COUNT}),
        },
        optional=["all_clear_message", "roll_call"],
    ),
    "Revisions": obj(
        {
            "revisions": {
                "type": "array",
                "items": obj(
                    {
                        "revision": INTEGER,
                        "title": STRING,
                        "body": STRING,
                        "priority": PRIORITY,
                        "require_ack": BOOLEAN,
                        "link": nullable(STRING),
                        "expires_at": MAYBE_WHEN,
                        "reconfirm": BOOLEAN,
                        "editor": nullable({"type": "string", "description": "email"}),
                        "created_at": WHEN,
                    }
                ),
            }
        }
    ),
    "Deliveries": obj(
        {
            "deliveries": {
                "type": "array",
                "items": obj(
                    {
                        "user": obj({"id": ID, "email": STRING, "name": STRING, "role": ROLE}),
                        "state": STATE,
                        "delivered_at": MAYBE_WHEN,
                        "read_at": MAYBE_WHEN,
                        "acknowledged_at": MAYBE_WHEN,
                        "channel": {
                            "type": "string",
                            "enum": ["tab", "push", "email", "push_sent", "email_sent", "not_yet"],
                        },
                        "pushed_at": MAYBE_WHEN,
                        "emailed_at": MAYBE_WHEN,
                        "answer": nullable({"type": "string", "enum": values(Answer)}),
                        "answer_text": nullable(STRING),
                        "answered_at": MAYBE_WHEN,
                    }
                ),
            },
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
            "offset": COUNT,
        }
    ),
    "Inbox": obj(
        {
            "notifications": {
                "type": "array",
                "items": obj(
                    {
                        "type": {"const": "notification"},
                        "id": ID,
                        "revision": INTEGER,
                        "title": STRING,
                        "body_html": {"type": "string", "description": "empty when withdrawn"},
                        "priority": PRIORITY,
                        "require_ack": BOOLEAN,
                        "confirm_by": MAYBE_WHEN,
                        "drill": BOOLEAN,
                        "created_at": WHEN,
                        "edited_at": MAYBE_WHEN,
                        "expires_at": MAYBE_WHEN,
                        "link": nullable(STRING),
                        "author": nullable({"type": "string", "description": "the author's name"}),
                        "state": STATE,
                        "stage": STAGE,
                    }
                ),
            }
        }
    ),
    "Reminding": obj({"reminding": COUNT}),
    "PushKey": obj({"public_key": {"type": "string", "description": "VAPID key, base64url"}}),
    "PushDevice": obj(
        {"id": ID, "device": STRING, "created_at": WHEN, "last_success_at": MAYBE_WHEN}
    ),
    "OpenApiDocument": {"type": "object", "description": "this document"},
}


# Operations ------------------------------------------------------------------------------
class Auth(Enum):
    """Who may call an operation (api/auth.py)."""

    API = "an API token, or the signed-in session (+ CSRF header)"
    CLIENT = "an API token, a person's client JWT, or the session (+ CSRF header)"
    BODY_TOKEN = "the signed token in the body (no other credentials)"
    PUBLIC = "anyone"


@dataclass(frozen=True)
class Param:
    """A query or header parameter."""

    name: str
    schema: dict[str, Any]
    description: str
    where: str = "query"


WHOLE_NUMBER = {"type": "integer", "minimum": 0, "maximum": MAX_ID}


@dataclass(frozen=True)
class Operation:
    """What one view takes and answers: `ok` the success status, `response` its body
    schema's name (None: no body), `body` the request body schema, `errors` the
    catalogue entries it can answer besides those every operation of its kind can."""

    summary: str
    tag: str
    ok: int = 200
    also_ok: tuple[int, ...] = ()  # other success statuses, with the same body
    response: str | None = None
    body: dict[str, Any] | None = None
    body_required: bool = True
    params: tuple[Param, ...] = ()
    errors: tuple[ErrorCode, ...] = ()
    auth: Auth = Auth.API
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)  # on `ok`
    example: dict[str, Any] | None = None  # a request body (the demo school's names)
    description: str | None = None  # default: the view's docstring


# Every wording of a code answers the same; listing one entry per code is enough.
NOTIFICATION_FOUND = (errors.NOTIFICATION_NOT_FOUND, errors.NOT_YOUR_NOTIFICATION)
CHANGEABLE = (errors.ALREADY_WITHDRAWN, errors.ALREADY_EXPIRED, errors.ALREADY_OVER)
DRAFT_RULES = (
    errors.TITLE_REQUIRED,
    errors.TITLE_TOO_LONG,
    errors.BODY_REQUIRED,
    errors.BODY_TOO_LONG,
    errors.INVALID_PRIORITY,
    errors.INVALID_LINK,
    errors.INVALID_EXPIRES_AT,
    errors.INVALID_SEND_AT,
    errors.INVALID_CONFIRM_BY,
    errors.INVALID_REMIND_AT,
)
AUDIENCE_RULES = (
    errors.NOT_A_SENDER,
    errors.EMPTY_AUDIENCE,
    errors.INVALID_AUDIENCE,
    errors.AUDIENCE_FORBIDDEN,
    errors.USER_NOT_FOUND,
    errors.CLASS_NOT_FOUND,
    errors.INVALID_ROLE,
)
# A browser's PushSubscription.toJSON() (a P-256 key and 16 bytes, base64url).
PUSH_SUBSCRIPTION = {
    "endpoint": "https://fcm.googleapis.com/fcm/send/example-device",
    "keys": {
        "p256dh": "BH9kD2F10JaazFP9nSVqlF9_pSywrT-vQ457PIjKwaQ_hKKYKaEGRyp"
        "E69s7yrgdCeE2cKZRykBLFks0Gu03ue4",
        "auth": "bqvOktXHZ4VWr7YVXysQag",
    },
    "expirationTime": None,
}
LOCATION = {"schema": {"type": "string"}, "required": True, "description": "the new resource"}

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("api.send_notification", "post"): Operation(
        "Send an announcement",
        "Announcements",
        ok=201,
        response="Sent",
        body=with_targets(schemas.NOTIFICATION_FIELDS),
        params=(
            Param(
                "Idempotency-Key",
                {"type": "string", "minLength": 1, "maxLength": 255},
                "The same key (per sender) returns the first result instead of sending again.",
                where="header",
            ),
        ),
        errors=(
            *DRAFT_RULES,
            *AUDIENCE_RULES,
            errors.INVALID_IDEMPOTENCY_KEY,
            errors.IDEMPOTENCY_KEY_REUSED,
        ),
        headers={
            "Location": LOCATION,
            "Idempotent-Replayed": {
                "schema": {"type": "string", "enum": ["true"]},
                "description": "present when the Idempotency-Key matched an earlier send",
            },
        },
        example={
            "title": "Trip tomorrow",
            "body": "Bring **lunch**.",
            "require_ack": True,
            "targets": {"classes": [{"name": "7b", "audience": ["students", "guardians"]}]},
        },
    ),
    ("api.list_notifications", "get"): Operation(
        "List announcements",
        "Announcements",
        response="NotificationList",
        params=(
            Param("stage", STAGE, "only announcements at this stage"),
            Param("priority", PRIORITY, "only announcements of this priority"),
            Param("since", DATE_TIME, "only those created at or after (with a time zone)"),
            Param("cursor", WHOLE_NUMBER, "the previous page's next_cursor"),
            Param("limit", WHOLE_NUMBER, "page size (default 50, at most 200)"),
        ),
        errors=(
            errors.FIELD_NOT_ONE_OF,
            errors.FIELD_NOT_AWARE,
            errors.FIELD_NOT_DATETIME,
            errors.FIELD_NOT_WHOLE_NUMBER,
        ),
    ),
    ("api.notification", "get"): Operation(
        "An announcement with its counts",
        "Announcements",
        response="Notification",
        errors=NOTIFICATION_FOUND,
        description="The announcement with its counts per receipt state and per channel; "
        "an emergency's also has its roll call and all clear.",
    ),
    ("api.notification", "patch"): Operation(
        "Edit an announcement",
        "Announcements",
        response="Notification",
        body=with_targets(schemas.EDIT_FIELDS),
        errors=(
            *NOTIFICATION_FOUND,
            *DRAFT_RULES,
            *AUDIENCE_RULES,
            *CHANGEABLE,
            errors.NOT_SCHEDULED,
            errors.NOTHING_TO_CHANGE,
        ),
        description=inspect.getdoc(schemas.notification_edit),
        example={"title": "Trip tomorrow: we leave at 9:00", "reconfirm": True},
    ),
    ("api.retract_notification", "post"): Operation(
        "Withdraw or cancel an announcement",
        "Announcements",
        response="Notification",
        errors=(*NOTIFICATION_FOUND, errors.ALREADY_WITHDRAWN),
    ),
    ("api.remind_notification", "post"): Operation(
        "Remind those who have not confirmed",
        "Announcements",
        ok=202,
        response="Reminding",
        errors=(
            *NOTIFICATION_FOUND,
            errors.NOT_ASKING_CONFIRMATION,
            errors.CANNOT_REMIND,
            errors.EVERYONE_CONFIRMED,
            errors.REMINDED_RECENTLY,
        ),
    ),
    ("api.notification_revisions", "get"): Operation(
        "Every revision of an announcement",
        "Announcements",
        response="Revisions",
        errors=NOTIFICATION_FOUND,
    ),
    ("api.notification_deliveries", "get"): Operation(
        "Per-recipient deliveries",
        "Announcements",
        response="Deliveries",
        params=(
            Param("state", {**STATE, "enum": [*STATE["enum"], ""]}, "only this state"),
            Param("limit", WHOLE_NUMBER, "1-1000 (default 1000; larger is 1000)"),
            Param("offset", WHOLE_NUMBER, "rows to skip"),
        ),
        errors=NOTIFICATION_FOUND,
    ),
    ("api.all_clear", "post"): Operation(
        "End an emergency (all clear)",
        "Emergencies",
        response="Notification",
        body=body_schema(schemas.ALL_CLEAR_FIELDS),
        body_required=False,
        errors=(
            *NOTIFICATION_FOUND,
            errors.NOT_AN_EMERGENCY,
            errors.EMERGENCY_NOT_SENT,
            errors.EMERGENCY_OVER,
            errors.ALREADY_WITHDRAWN,
            errors.ALL_CLEAR_TOO_LONG,
        ),
        example={"message": "All clear. Back to your classrooms."},
    ),
    ("api.my_notifications", "get"): Operation(
        "The caller's own announcements",
        "Inbox",
        response="Inbox",
        params=(Param("since", WHOLE_NUMBER, "only announcements with a greater id"),),
        auth=Auth.CLIENT,
    ),
    ("api.get_presence", "get"): Operation(
        "Who is online",
        "Presence",
        response="Presence",
        errors=(errors.PRESENCE_STAFF_ONLY,),
    ),
    ("api.push_key", "get"): Operation(
        "The server's Web Push key", "Web Push", response="PushKey", auth=Auth.CLIENT
    ),
    ("api.push_subscribe", "post"): Operation(
        "Save a browser's push subscription",
        "Web Push",
        ok=201,
        also_ok=(200,),  # an endpoint already saved: its keys updated
        response="PushDevice",
        body=body_schema(schemas.PUSH_SUBSCRIPTION_FIELDS, {"keys": schemas.PUSH_KEYS_FIELDS}),
        errors=(
            errors.INVALID_PUSH_ENDPOINT,
            errors.PUSH_SERVICE_NOT_ALLOWED,
            errors.INVALID_PUSH_KEY,
        ),
        auth=Auth.CLIENT,
        example=PUSH_SUBSCRIPTION,
    ),
    ("api.push_unsubscribe", "delete"): Operation(
        "Forget a push subscription",
        "Web Push",
        ok=204,
        body=body_schema(schemas.PUSH_ENDPOINT_FIELDS),
        errors=(errors.PUSH_SUBSCRIPTION_NOT_FOUND,),
        auth=Auth.CLIENT,
        example={"endpoint": PUSH_SUBSCRIPTION["endpoint"]},
    ),
    ("api.device_receipt", "post"): Operation(
        "A device's receipt (from the service worker)",
        "Web Push",
        ok=204,
        body=body_schema(schemas.DEVICE_RECEIPT_FIELDS),
        errors=(
            errors.INVALID_RECEIPT_TOKEN,
            errors.RECEIPT_TOKEN_EXPIRED,
            errors.INVALID_DEVICE_STATE,
            errors.NOTIFICATION_NOT_FOUND,
        ),
        auth=Auth.BODY_TOKEN,
        example={"token": "the token in the push's payload", "state": "read"},
    ),
    ("api.create_user", "post"): Operation(
        "Create a user",
        "Roster",
        ok=201,
        response="User",
        body=body_schema(schemas.USER_FIELDS),
        errors=(
            errors.ADMINS_ONLY,
            errors.INVALID_EMAIL,
            errors.INVALID_ROLE,
            errors.NAME_REQUIRED,
            errors.NAME_TOO_LONG,
            errors.WEAK_PASSWORD,
            errors.INVALID_LANGUAGE,
            errors.DUPLICATE_EMAIL,
            errors.CLASS_NOT_FOUND,
            errors.USER_NOT_FOUND,
            errors.INVALID_MEMBER,
            errors.NOT_A_GUARDIAN,
            errors.NOT_A_STUDENT,
        ),
        headers={"Location": LOCATION},
        example={
            "email": "ann.lee@school.test",
            "name": "Ann Lee",
            "role": "student",
            "classes": ["7b"],
        },
    ),
    ("api.get_user", "get"): Operation(
        "A user",
        "Roster",
        response="User",
        errors=(errors.ADMINS_ONLY, errors.USER_NOT_FOUND),
    ),
    ("api.export_user", "get"): Operation(
        "Everything held about a person",
        "Data protection",
        response="PersonExport",
        errors=(errors.PRIVACY_ADMINS_ONLY, errors.USER_NOT_FOUND),
    ),
    ("api.erase_user", "post"): Operation(
        "Erase a person",
        "Data protection",
        response="Erased",
        errors=(
            errors.PRIVACY_ADMINS_ONLY,
            errors.USER_NOT_FOUND,
            errors.ALREADY_ERASED,
            errors.SELF_ERASURE,
        ),
    ),
    ("api.create_class", "post"): Operation(
        "Create a class",
        "Roster",
        ok=201,
        response="Class",
        body=body_schema(schemas.CLASS_FIELDS),
        errors=(errors.ADMINS_ONLY, errors.INVALID_CLASS_NAME, errors.DUPLICATE_CLASS),
        example={"name": "8c"},
    ),
    ("api.issue_token", "post"): Operation(
        "Issue a client JWT for a user",
        "Tokens",
        ok=201,
        response="ClientToken",
        body=body_schema(schemas.TOKEN_FIELDS),
        errors=(errors.TOKENS_ADMINS_ONLY, errors.USER_NOT_FOUND, errors.USER_INACTIVE),
        example={"email": "admin@school.test"},
    ),
    ("apidocs.openapi_document", "get"): Operation(
        "This document", "Meta", response="OpenApiDocument", auth=Auth.PUBLIC
    ),
}

# What every operation of a kind can answer (api/auth.py, schemas.json_body, Flask).
AUTH_ERRORS: dict[Auth, tuple[ErrorCode, ...]] = {
    Auth.API: (
        errors.NOT_AUTHENTICATED,
        errors.INVALID_TOKEN,
        errors.CLIENT_TOKEN_NOT_ALLOWED,
        errors.API_RATE_LIMITED,
    ),
    Auth.CLIENT: (errors.NOT_AUTHENTICATED, errors.INVALID_TOKEN, errors.API_RATE_LIMITED),
    Auth.BODY_TOKEN: (errors.API_RATE_LIMITED,),
    Auth.PUBLIC: (),
}
BODY_ERRORS = (
    errors.PAYLOAD_TOO_LARGE,  # past SCHOOLBELL_MAX_UPLOAD_BYTES
    errors.JSON_BODY_REQUIRED,
    errors.INVALID_JSON,
    errors.UNKNOWN_FIELD,
    errors.FIELD_REQUIRED,
)
CSRF_ERRORS = (errors.CSRF_FAILED,)  # a session-authenticated call that changes something
ID_ERRORS = (errors.NOT_FOUND,)  # an id no row can have (0, or past MAX_ID)
PARAM_ERRORS = (errors.FIELD_REQUIRED,)  # a query parameter of the wrong form

SECURITY_SCHEMES = {
    "apiToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (`flask --app wsgi create-api-token NAME`); acts as "
        "its owner, an administrator. On the operations that say so, a person's client "
        "JWT (POST /tokens, `issue-token`) works too, for their own things only.",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "session",
        "description": "The signed-in browser session (same origin).",
    },
    "csrfHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRFToken",
        "description": "With the session, on POST, PATCH and DELETE: the page's CSRF token.",
    },
}


def security(op: Operation, method: str) -> list[dict[str, list]]:
    """The security requirements: a token, or the session (+ CSRF header to change)."""
    if op.auth in (Auth.PUBLIC, Auth.BODY_TOKEN):
        return []
    session = {"session": []} | ({} if method == "get" else {"csrfHeader": []})
    return [{"apiToken": []}, session]


def error_responses(codes: Iterable[ErrorCode]) -> dict[str, Any]:
    """Responses per status, each the Error shape with the codes it can carry (the
    code is pinned, so an undocumented code fails schema conformance)."""
    by_status: dict[int, dict[str, ErrorCode]] = {}
    for entry in codes:
        by_status.setdefault(entry.status, {}).setdefault(entry.code, entry)
    responses = {}
    for status, entries in sorted(by_status.items()):
        lines = "\n".join(f"- `{code}`: {e.message}" for code, e in sorted(entries.items()))
        schema = {
            "allOf": [
                ref("Error"),
                {"properties": {"error": {"properties": {"code": {"enum": sorted(entries)}}}}},
            ]
        }
        response: dict[str, Any] = {
            "description": lines,
            "content": {JSON: {"schema": schema}},
        }
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {"schema": {"type": "string"}, "required": True}
            }
        if status == 429:
            response["headers"] = {
                "Retry-After": {
                    "schema": {"type": "string"},
                    "description": "seconds (on rate limits)",
                }
            }
        responses[str(status)] = response
    return responses


def openapi_path(rule: Rule) -> tuple[str, list[dict[str, Any]]]:
    """The rule's path in OpenAPI form (relative to the server) and its path parameters:
    `<id:notification_id>` is an integer in the id converter's range, others strings."""
    parameters = []
    for name, converter in rule._converters.items():
        if isinstance(converter, IntegerConverter):
            schema = {"type": "integer", "minimum": converter.min or 0, "maximum": converter.max}
        else:
            schema = {"type": "string", "pattern": "^[^/]+$"}
        parameter = {"name": name, "in": "path", "required": True, "schema": schema}
        if name in PATH_EXAMPLES:
            parameter["example"] = PATH_EXAMPLES[name]
        parameters.append(parameter)
    path = VARIABLE.sub(r"{\1}", rule.rule).removeprefix(PREFIX)
    return path, parameters


PATH_EXAMPLES = {"notification_id": 1, "email": "admin@school.test"}
VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")  # <converter:name> or <name>


def operation_json(app: Flask, rule: Rule, method: str, op: Operation) -> dict[str, Any]:
    """One operation of the document."""
    _, path_params = openapi_path(rule)
    codes: list[ErrorCode] = list(AUTH_ERRORS[op.auth])
    if op.body is not None:
        codes += BODY_ERRORS
    if op.auth in (Auth.API, Auth.CLIENT) and method != "get":
        codes += CSRF_ERRORS
    if any(p["schema"]["type"] == "integer" for p in path_params):
        codes += ID_ERRORS
    if op.params and any(p.where == "query" for p in op.params):
        codes += PARAM_ERRORS
    codes += op.errors
    success: dict[str, Any] = {"description": op.summary}
    if op.response is not None:
        success["content"] = {JSON: {"schema": ref(op.response)}}
    if op.headers:
        success["headers"] = op.headers
    doc = {
        "operationId": rule.endpoint.partition(".")[2] + ("_" + method if method != "get" else ""),
        "summary": op.summary,
        "description": (op.description or inspect.getdoc(app.view_functions[rule.endpoint]) or "")
        + f"\n\nCalled with {op.auth.value}.",
        "tags": [op.tag],
        "security": security(op, method),
        "parameters": path_params
        + [
            {"name": p.name, "in": p.where, "schema": p.schema, "description": p.description}
            for p in op.params
        ],
        "responses": {
            **{str(status): success for status in sorted((op.ok, *op.also_ok))},
            **error_responses(codes),
        },
    }
    if op.body is not None:
        content: dict[str, Any] = {"schema": op.body}
        if op.example is not None:
            content["example"] = op.example
        doc["requestBody"] = {"required": op.body_required, "content": {JSON: content}}
    return doc


def api_rules(app: Flask) -> list[Rule]:
    """The app's rules under /api/v1, in path order."""
    return sorted(
        (r for r in app.url_map.iter_rules() if r.rule.startswith(PREFIX + "/")),
        key=lambda r: r.rule,
    )


def rule_methods(rule: Rule) -> list[str]:
    """The methods a rule takes, lower case, without the automatic HEAD and OPTIONS."""
    return sorted(m.lower() for m in rule.methods or () if m not in {"HEAD", "OPTIONS"})


def document(app: Flask) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for this app. A rule with no `OPERATIONS` entry is
    left out (the test fails on it)."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in api_rules(app):
        for method in rule_methods(rule):
            op = OPERATIONS.get((rule.endpoint, method))
            if op is None:
                continue
            path, _ = openapi_path(rule)
            paths.setdefault(path, {})[method] = operation_json(app, rule, method, op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Schoolbell API",
            "version": "1",
            "description": "Live announcements for schools: send, follow and manage them. "
            'Errors are always `{"error": {"code", "message"}}` with a stable code '
            "(all codes: docs/errors.md).",
        },
        "servers": [{"url": PREFIX}],
        "tags": [{"name": name} for name in dict.fromkeys(op.tag for op in OPERATIONS.values())],
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    }
