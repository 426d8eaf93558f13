"""API views for announcements: send (idempotent), status, deliveries, own inbox."""

from __future__ import annotations

from flask import current_app, jsonify, request, url_for

from ..db import get_session
from ..extensions import client_address
from ..models import Priority
from ..realtime.events import NotificationChanged
from ..realtime.live import live
from ..services import (
    edits,
    emergencies,
    history,
    inbox,
    notifications,
    reach,
    reminders,
    roll_call,
    status,
    visibility,
    withdrawal,
)
from . import bp, schemas
from .auth import api_user


@bp.post("/notifications")
def send_notification():
    """Send an announcement; 201 {id, recipient_count}. The same `Idempotency-Key`
    (per sender) returns the first result again instead of sending twice."""
    draft = schemas.notification_draft(schemas.json_body(schemas.NOTIFICATION_FIELDS))
    session = get_session()
    prepared = notifications.prepare(
        session, api_user(), draft, idempotency_key=request.headers.get("Idempotency-Key")
    )
    result = notifications.send(
        session,
        prepared,
        address=client_address(),
        delays=reach.Delays.from_config(current_app.config),
    )
    live().publish_sent(result)
    headers = {"Location": url_for(".notification", notification_id=result.notification.id)}
    if not result.created:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(schemas.sent_json(result)), 201, headers


@bp.get("/notifications")
def list_notifications():
    """The announcements the caller may see, newest first, a page at a time:
    {notifications, next_cursor} (next_cursor null on the last page)."""
    filters, before, limit = schemas.list_query(request.args)
    page = history.listing(get_session(), api_user(), filters, before=before, limit=limit)
    return jsonify(
        {
            "notifications": [schemas.listed_json(row) for row in page.rows],
            "next_cursor": None if page.next_before is None else str(page.next_before),
        }
    )


def edit_notification(notification_id: int):
    """Edit an announcement (its author or an admin): 200 with it as it is now. Sent:
    open tabs update in place; a scheduled one may also change send_at and targets."""
    change = schemas.notification_edit(schemas.json_body(schemas.EDIT_FIELDS))
    session = get_session()
    result = edits.edit(session, api_user(), notification_id, change, address=client_address())
    if result.change is not None:
        live().publish_changed(notification_id, result.change)
    return notification_status(notification_id)


@bp.post("/notifications/<id:notification_id>/retract")
def retract_notification(notification_id: int):
    """Withdraw a sent announcement, or cancel a scheduled one: 200 with it as it is now."""
    session = get_session()
    _, change = withdrawal.withdraw(session, api_user(), notification_id, address=client_address())
    if change is not None:
        live().publish_changed(notification_id, change)
    return notification_status(notification_id)


@bp.post("/notifications/<id:notification_id>/remind")
def remind_notification(notification_id: int):
    """Remind now everyone who has not confirmed: 202 {reminding}."""
    count = reminders.remind_now(
        get_session(),
        api_user(),
        notification_id,
        min_interval_s=current_app.config["REMIND_MIN_INTERVAL_S"],
        address=client_address(),
    )
    live().wake_jobs()
    return jsonify({"reminding": count}), 202


@bp.get("/notifications/<id:notification_id>/revisions")
def notification_revisions(notification_id: int):
    """Every revision of an announcement, oldest first."""
    notification = visibility.viewable(get_session(), api_user(), notification_id)
    return jsonify({"revisions": [schemas.revision_json(r) for r in notification.revisions]})


# One rule for both methods: with two, werkzeug answers an id out of range with 405.
@bp.route("/notifications/<id:notification_id>", methods=["GET", "PATCH"])
def notification(notification_id: int):
    """GET: the announcement with its counts; PATCH: edit it."""
    if request.method == "PATCH":
        return edit_notification(notification_id)
    return notification_status(notification_id)


def notification_status(notification_id: int):
    """An announcement with its counts per receipt state."""
    session = get_session()
    notification = visibility.viewable(session, api_user(), notification_id)
    counts, channels = status.counts_by_state_and_channel(session, notification_id)
    body = schemas.notification_json(notification, counts, channels)
    if notification.priority is Priority.EMERGENCY:  # the roll call, the all clear
        body |= schemas.emergency_json(notification, roll_call.counts(session, notification_id))
    return jsonify(body)


@bp.get("/notifications/<id:notification_id>/deliveries")
def notification_deliveries(notification_id: int):
    """Per-recipient delivery rows (optionally ?state=pending|delivered|read|acknowledged)."""
    session = get_session()
    visibility.viewable(session, api_user(), notification_id)
    state = schemas.state_filter(request.args.get("state"))
    limit, offset = schemas.paging(request.args)
    rows = status.rows(session, notification_id, state=state, limit=limit, offset=offset)
    return jsonify(
        {
            "deliveries": [schemas.delivery_json(d, u) for d, u in rows],
            "limit": limit,
            "offset": offset,
        }
    )


@bp.get("/me/notifications")
def my_notifications():
    """The caller's own announcements (`?since=<id>`: newer ones, oldest first): a polling
    fallback for clients that cannot keep a socket open."""
    since = schemas.optional_int(request.args.get("since"), "since")
    rows = inbox.inbox(get_session(), api_user().id, since=since)
    return jsonify({"notifications": [schemas.inbox_json(n, d, a) for n, d, a in rows]})


# Emergencies ----------------------------------------------------------------------------
@bp.post("/notifications/<id:notification_id>/all-clear")
def all_clear(notification_id: int):
    """End an emergency (its author or an administrator): 200 with the announcement;
    every open tab of its recipients turns its overlay into the message."""
    body = schemas.json_body(schemas.ALL_CLEAR_FIELDS) if request.data else {}
    session = get_session()
    notification = emergencies.all_clear(
        session, api_user(), notification_id, body.get("message"), address=client_address()
    )
    live().publish_changed(notification.id, NotificationChanged.ALL_CLEAR)
    counts, channels = status.counts_by_state_and_channel(session, notification.id)
    return jsonify(
        schemas.notification_json(notification, counts, channels)
        | schemas.emergency_json(notification, roll_call.counts(session, notification.id))
    )
