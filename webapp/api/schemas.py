"""Every JSON shape of the API: request bodies (checked here) and response bodies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app, request

from .. import errors
from ..models import (
    Delivery,
    DeliveryState,
    Notification,
    NotificationRevision,
    Priority,
    PushSubscription,
    SchoolClass,
    User,
)
from ..realtime import protocol
from ..services import audience, notifications, scheduled
from ..services.audience import AudienceSpec
from ..services.classes import Person
from ..services.edits import Edit
from ..services.history import HistoryFilters, HistoryRow
from ..services.notifications import Draft, SendResult
from ..services.presence import OnlineSummary
from ..services.privacy import Erased
from ..services.roll_call import Counts as RollCallCounts
from ..services.status import ChannelCounts, reached_by
from ..services.users import UserInput, parse_role
from ..tokens import ClientToken


@dataclass(frozen=True)
class Field:
    """One body field: `str`, `bool`, `dict`, `float` (a number), or `list` (of
    strings); required or not."""

    kind: type
    required: bool = False


USER_FIELDS = {
    "email": Field(str, required=True),
    "name": Field(str, required=True),
    "role": Field(str, required=True),
    "password": Field(str),
    "language": Field(str),
    "classes": Field(list),
    "guardian_of": Field(list),
}
CLASS_FIELDS = {"name": Field(str, required=True)}
TOKEN_FIELDS = {"email": Field(str, required=True)}
DEVICE_RECEIPT_FIELDS = {"token": Field(str, required=True), "state": Field(str, required=True)}
# A browser's PushSubscription.toJSON(); expirationTime (ms since 1970, or null) is
# accepted and not kept: an expired endpoint answers 410 and is deleted then.
PUSH_SUBSCRIPTION_FIELDS = {
    "endpoint": Field(str, required=True),
    "keys": Field(dict, required=True),
    "expirationTime": Field(float),
}
PUSH_KEYS_FIELDS = {"p256dh": Field(str, required=True), "auth": Field(str, required=True)}
PUSH_ENDPOINT_FIELDS = {"endpoint": Field(str, required=True)}


def json_body(fields: dict[str, Field]) -> dict[str, Any]:
    """The request's JSON object, checked against `fields`: known names, right types."""
    if not request.is_json:
        raise errors.JSON_BODY_REQUIRED.error()
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes: not a 500
        body = None
    if not isinstance(body, dict):
        raise errors.INVALID_JSON.error()
    if not _is_storable_text(body):
        raise errors.JSON_NOT_TEXT.error()
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise errors.UNKNOWN_FIELD.error(fields=", ".join(unknown), details={"fields": unknown})
    for name, field in fields.items():
        _check(name, body.get(name), field)
    return body


def _is_storable_text(body: dict[str, Any]) -> bool:
    """Whether every string in the body (names too) can be stored and shown: JSON's
    escapes can spell a lone UTF-16 surrogate ("\\ud800"), which is no UTF-8, and NUL,
    which PostgreSQL's text refuses; both were a 500. Walked without recursion: the body
    may be nested as deep as the parser allows."""
    pending: list[Any] = [body]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and ("\x00" in value or not _encodes(value)):
            return False
    return True


def _encodes(text: str) -> bool:
    """Whether the text is valid UTF-8 material (no lone surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check(name: str, value: Any, field: Field) -> None:
    """Refuse a missing required field, or a value of the wrong type."""
    if value is None:
        if field.required:
            raise errors.FIELD_REQUIRED.error(field=name, details={"field": name})
        return
    if field.kind in (str, bool, dict, float):
        _check_type(name, value, field.kind)
    if field.kind is list and not (
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    ):
        raise errors.FIELD_NOT_STRINGS.error(field=name, details={"field": name})


TYPE_NAMES = {str: "a string", bool: "true or false", dict: "an object", float: "a number"}


def _check_type(name: str, value: Any, kind: type) -> None:
    """Refuse a present value that is not of `kind` (None passes: optional; `float`
    takes any JSON number)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if value is not None and not isinstance(value, kind):
        raise errors.FIELD_WRONG_TYPE.error(
            field=name, expected=TYPE_NAMES[kind], details={"field": name}
        )


def user_input(body: dict[str, Any]) -> UserInput:
    """The account fields of a checked user body."""
    return UserInput(
        email=body["email"],
        name=body["name"],
        role=body["role"],
        password=body.get("password"),
        language=body.get("language"),
    )


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC, e.g. 2025-09-01T07:30:00+00:00."""
    return moment.isoformat()


def _maybe_iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def revision_json(r: NotificationRevision) -> dict[str, Any]:
    """One kept revision of an announcement."""
    return {
        "revision": r.revision,
        "title": r.title,
        "body": r.body,
        "priority": r.priority.value,
        "require_ack": r.require_ack,
        "link": r.link,
        "expires_at": _maybe_iso(r.expires_at),
        "reconfirm": r.reconfirm,
        "editor": r.editor.email if r.editor else None,
        "created_at": _iso(r.created_at),
    }


def user_json(person: Person) -> dict[str, Any]:
    """A user as the API shows them, with their classes and the students they guard."""
    user = person.user
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role.value,
        "language": user.language,
        "active": user.active,
        "classes": [{"name": c.name, "role": how.value} for c, how in person.classes],
        "guardian_of": [ward.email for ward in person.wards],
        "created_at": _iso(user.created_at),
    }


def erased_json(erased: Erased) -> dict[str, Any]:
    """An erasure done: the account's id and the placeholder address it keeps."""
    return {"id": erased.user_id, "email": erased.email, "erased_at": _iso(erased.erased_at)}


def class_json(school_class: SchoolClass) -> dict[str, Any]:
    """A class as the API shows it."""
    return {
        "id": school_class.id,
        "name": school_class.name,
        "created_at": _iso(school_class.created_at),
    }


def presence_json(summary: OnlineSummary) -> dict[str, Any]:
    """Who is online: counts per role and class (online / total), and the people."""
    return {
        "online": summary.online,
        "total": summary.people_total,
        "roles": [{"role": r, "online": on, "total": n} for r, on, n in summary.by_role],
        "classes": [{"name": c, "online": on, "total": n} for c, on, n in summary.by_class],
        "users": [
            {
                "email": person.user.email,
                "name": person.user.name,
                "role": person.user.role.value,
                "tabs": person.tabs,
                "since": _iso(person.since),
            }
            for person in summary.people
        ],
    }


def client_token_json(issued: ClientToken) -> dict[str, Any]:
    """A freshly issued client JWT and when it expires."""
    return {"token": issued.token, "expires_at": _iso(issued.expires_at)}


NOTIFICATION_FIELDS = {
    "title": Field(str, required=True),
    "body": Field(str, required=True),
    "targets": Field(dict, required=True),
    "priority": Field(str),
    "require_ack": Field(bool),
    "expires_at": Field(str),
    "link": Field(str),
    "send_at": Field(str),
    "confirm_by": Field(str),
    "remind_at": Field(list),
    "drill": Field(bool),
}
EDIT_FIELDS = {
    "title": Field(str),
    "body": Field(str),
    "priority": Field(str),
    "require_ack": Field(bool),
    "link": Field(str),  # null: no link
    "expires_at": Field(str),  # null: never
    "confirm_by": Field(str),  # null: no deadline
    "remind_at": Field(list),
    "send_at": Field(str),  # scheduled only; null: now
    "targets": Field(dict),  # scheduled only
    "reconfirm": Field(bool),
}
TARGET_FIELDS = {
    "users": Field(list),
    "classes": Field(list),
    "roles": Field(list),
    "everyone": Field(bool),
}


def notification_draft(body: dict[str, Any]) -> Draft:
    """A checked notification body -> the service's Draft (targets included)."""
    return Draft(
        title=body["title"],
        body=body["body"],
        priority=body.get("priority") or Priority.NORMAL.value,
        require_ack=bool(body.get("require_ack")),
        expires_at=_datetime(body.get("expires_at"), "expires_at"),
        link=body.get("link"),
        audience=audience_spec(body["targets"]),
        send_at=_datetime(body.get("send_at"), "send_at"),
        confirm_by=_datetime(body.get("confirm_by"), "confirm_by"),
        remind_at=tuple(_datetime(t, "remind_at") for t in body.get("remind_at") or ()),
        drill=bool(body.get("drill")),
    )


def notification_edit(body: dict[str, Any]) -> Edit:
    """A checked PATCH body -> the service's Edit: only the fields present change (null
    clears link, expires_at and confirm_by; send_at null means now)."""
    change = Edit(reconfirm=bool(body.get("reconfirm")))
    for name in ("title", "body", "priority", "require_ack", "link"):
        if name in body:
            setattr(change, name, body[name])
    for name in ("expires_at", "confirm_by", "send_at"):
        if name in body:
            setattr(change, name, _datetime(body[name], name))
    if "remind_at" in body:
        change.remind_at = [_datetime(t, "remind_at") for t in body["remind_at"] or ()]
    if "targets" in body:
        if body["targets"] is None:
            raise errors.FIELD_REQUIRED.error(field="targets", details={"field": "targets"})
        change.audience = audience_spec(body["targets"])
    return change


def audience_spec(targets: dict[str, Any]) -> AudienceSpec:
    """`targets` -> AudienceSpec: users by email, classes with audiences, roles, everyone."""
    unknown = sorted(set(targets) - set(TARGET_FIELDS))
    if unknown:
        raise errors.UNKNOWN_TARGET.error(fields=", ".join(unknown), details={"fields": unknown})
    for name in ("users", "roles"):
        _check(f"targets.{name}", targets.get(name), TARGET_FIELDS[name])
    _check_type("targets.everyone", targets.get("everyone"), bool)
    class_targets = []
    for item in targets.get("classes") or []:
        if isinstance(item, str):
            item = {"name": item}
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or set(item) - {"name", "audience"}
        ):
            raise errors.BAD_CLASS_TARGET.error(details={"field": "targets.classes"})
        class_targets.append(audience.parse_class_target(item["name"], item.get("audience")))
    if not isinstance(targets.get("classes") or [], list):
        raise errors.CLASS_TARGETS_NOT_LIST.error(details={"field": "targets.classes"})
    return AudienceSpec(
        users=tuple(targets.get("users") or ()),
        classes=tuple(class_targets),
        roles=tuple(parse_role(r) for r in targets.get("roles") or ()),
        everyone=bool(targets.get("everyone")),
    )


def _datetime(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 date-time (naive ones are refused later, with the field's own code)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            moment.astimezone(UTC)  # 9999-12-31T23:59-23:00 is past year 9999 in UTC
        return moment
    except (ValueError, OverflowError):
        raise errors.FIELD_NOT_DATETIME.error(field=name, details={"field": name}) from None


def optional_int(value: str | None, name: str) -> int | None:
    """A non-negative integer query parameter, or None."""
    if value is None or value == "":
        return None
    # ASCII digits only ("²" is a digit to isdigit(), not to int()), and not so many
    # that int() refuses them: both were a 500.
    if (
        not (value.isascii() and value.isdigit())
        or len(value) > len(str(protocol.MAX_ID))
        or int(value) > protocol.MAX_ID
    ):
        raise errors.FIELD_NOT_WHOLE_NUMBER.error(
            field=name, max=protocol.MAX_ID, details={"field": name}
        )
    return int(value)


def paging(args) -> tuple[int, int]:
    """?limit= (1-1000, default 1000) and ?offset=."""
    limit = optional_int(args.get("limit"), "limit") or 1000
    return min(max(limit, 1), 1000), optional_int(args.get("offset"), "offset") or 0


def one_of(value: str | None, name: str, choices) -> str | None:
    """A query parameter that must be one of `choices` (values), or None when absent."""
    if value is None or value == "":
        return None
    if value not in choices:
        raise errors.FIELD_NOT_ONE_OF.error(
            field=name, choices=", ".join(choices), details={"field": name}
        )
    return value


def aware_datetime(value: str | None, name: str) -> datetime | None:
    """A query parameter that must be an ISO 8601 date-time with its time zone."""
    moment = _datetime(value or None, name)
    if moment is not None and moment.tzinfo is None:
        raise errors.FIELD_NOT_AWARE.error(field=name, details={"field": name})
    return moment


def list_query(args) -> tuple[HistoryFilters, int | None, int]:
    """GET /notifications' ?stage=&priority=&since=&cursor=&limit= (default 50, at most
    200): the filters, the cursor (ids below it) and the page size."""
    stage = one_of(args.get("stage"), "stage", [s.value for s in notifications.Stage])
    priority = one_of(args.get("priority"), "priority", [p.value for p in Priority])
    filters = HistoryFilters(
        stage=notifications.Stage(stage) if stage else None,
        priority=Priority(priority) if priority else None,
        since=aware_datetime(args.get("since"), "since"),
    )
    limit = optional_int(args.get("limit"), "limit") or 50
    return filters, optional_int(args.get("cursor"), "cursor"), limit


def listed_json(row: HistoryRow) -> dict[str, Any]:
    """One announcement of the list: what it is, where it is, how far it got."""
    n = row.notification
    return {
        "id": n.id,
        "stage": row.stage.value,
        "title": n.title,
        "priority": n.priority.value,
        "require_ack": n.require_ack,
        "drill": n.drill,
        "author": n.author.email if n.author else None,
        "author_name": row.author_name,
        "created_at": _iso(n.created_at),
        "send_at": _maybe_iso(n.send_at),
        "sent_at": _maybe_iso(n.sent_at),
        "expires_at": _maybe_iso(n.expires_at),
        "withdrawn_at": _maybe_iso(n.retracted_at),
        "recipient_count": n.recipient_count,
        "read": row.read,
        "acknowledged": row.acknowledged,
    }


def state_filter(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value not in {s.value for s in DeliveryState}:
        raise errors.BAD_DELIVERY_STATE.error(details={"field": "state"})
    return value


def sent_json(result: SendResult) -> dict[str, Any]:
    n = result.notification
    return {
        "id": n.id,
        "recipient_count": n.recipient_count,
        "stage": notifications.stage(n).value,
        "send_at": _maybe_iso(n.send_at),
    }


def notification_json(
    n: Notification, counts: dict[str, int], channels: ChannelCounts
) -> dict[str, Any]:
    """An announcement with its counts per receipt state and per channel."""
    return {
        "id": n.id,
        "stage": notifications.stage(n).value,
        "revision": n.revision,
        "title": n.title,
        "body": n.body,
        "body_html": n.body_html,
        "priority": n.priority.value,
        "require_ack": n.require_ack,
        "drill": n.drill,
        "link": n.link,
        "author": n.author.email if n.author else None,
        "created_at": _iso(n.created_at),
        "send_at": _maybe_iso(n.send_at),
        "sent_at": _maybe_iso(n.sent_at),
        "late": scheduled.is_late(n, current_app.config["SCHEDULED_LATE_AFTER_S"]),
        "send_error": n.send_error,
        "edited_at": _maybe_iso(n.edited_at),
        "expires_at": _maybe_iso(n.expires_at),
        "confirm_by": _maybe_iso(n.confirm_by),
        "remind_at": list(n.remind_at or ()),
        "withdrawn_at": _maybe_iso(n.retracted_at),
        "all_clear_at": _maybe_iso(n.all_clear_at),
        "recipient_count": n.recipient_count,
        "counts": counts,
        "channels": channels.as_dict(),
    }


def delivery_json(d: Delivery, user: User) -> dict[str, Any]:
    """One recipient's delivery, with a timestamp per state reached."""
    return {
        "user": {"id": user.id, "email": user.email, "name": user.name, "role": user.role.value},
        "state": d.state.value,
        "delivered_at": _iso(d.delivered_at) if d.delivered_at else None,
        "read_at": _iso(d.read_at) if d.read_at else None,
        "acknowledged_at": _iso(d.acknowledged_at) if d.acknowledged_at else None,
        "channel": reached_by(d)[0],
        "pushed_at": _iso(d.pushed_at) if d.pushed_at else None,
        "emailed_at": _iso(d.emailed_at) if d.emailed_at else None,
        **answer_json(d),
    }


# Emergencies: roll call and all clear ---------------------------------------------------
ALL_CLEAR_FIELDS = {"message": Field(str)}


def answer_json(d: Delivery) -> dict[str, Any]:
    """A recipient's roll-call answer (emergencies; all None until they answer)."""
    return {
        "answer": d.answer.value if d.answer else None,
        "answer_text": d.answer_text,
        "answered_at": _iso(d.answered_at) if d.answered_at else None,
    }


def emergency_json(n: Notification, roll_call: RollCallCounts) -> dict[str, Any]:
    """What an emergency adds to its announcement: drill, the all clear, and the roll
    call's counts."""
    return {
        "drill": bool(n.drill),
        "all_clear_at": _iso(n.all_clear_at) if n.all_clear_at else None,
        "all_clear_message": n.all_clear_message,
        "roll_call": roll_call.as_dict(),
    }


# ------------------------------------------------------------------------------------------


def inbox_json(n: Notification, d: Delivery, author: str | None) -> dict[str, Any]:
    """One of the caller's announcements: the wire message plus its receipt state and
    stage (a withdrawn one without its text)."""
    message = {
        **protocol.notification(n, author),
        "state": d.state.value,
        "stage": notifications.stage(n).value,
    }
    if n.retracted_at is not None:
        message.update(body_html="", link=None)
    return message


def push_subscription(body: dict[str, Any]) -> dict[str, Any]:
    """A checked PushSubscription body, its `keys` object checked too."""
    keys = body["keys"]
    unknown = sorted(set(keys) - set(PUSH_KEYS_FIELDS))
    if unknown:
        fields = [f"keys.{name}" for name in unknown]
        raise errors.UNKNOWN_FIELD.error(fields=", ".join(fields), details={"fields": fields})
    for name, field in PUSH_KEYS_FIELDS.items():
        _check(f"keys.{name}", keys.get(name), field)
    return body


def push_subscription_json(subscription: PushSubscription, device: str) -> dict[str, Any]:
    """A saved device, as its browser learns it (the endpoint and keys it sent stay out)."""
    return {
        "id": subscription.id,
        "device": device,
        "created_at": _iso(subscription.created_at),
        "last_success_at": _iso(subscription.last_success_at)
        if subscription.last_success_at
        else None,
    }
