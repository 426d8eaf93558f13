"""API views for Web Push: the server's key, browsers' subscriptions, and receipts from
devices' service workers.

The key and the subscriptions take the signed-in session (with CSRF for POST and
DELETE) or a client JWT as `Authorization: Bearer` (an embedded page); see api/auth.py.
"""

from __future__ import annotations

from flask import current_app, jsonify, request

from ..db import get_session
from ..extensions import client_address
from ..realtime.live import live
from ..services import push
from . import bp, schemas
from .auth import api_user


@bp.get("/push/key")
def push_key():
    """`{"public_key"}`: the VAPID key, base64url, for `pushManager.subscribe`."""
    return jsonify({"public_key": push.public_key(current_app)})


@bp.post("/push/subscriptions")
def push_subscribe():
    """A browser's PushSubscription JSON; 201 when new, 200 for an endpoint already
    saved (its keys updated); 422 for an endpoint that is not a known push service or
    keys that are not valid."""
    info = schemas.push_subscription(schemas.json_body(schemas.PUSH_SUBSCRIPTION_FIELDS))
    user_agent = request.headers.get("User-Agent")
    subscription, created = push.subscribe(
        get_session(), api_user(), info, user_agent, client_address(), config=current_app.config
    )
    body = schemas.push_subscription_json(subscription, push.device_name(user_agent))
    return jsonify(body), 201 if created else 200


@bp.delete("/push/subscriptions")
def push_unsubscribe():
    """`{"endpoint"}`: forget one of the caller's subscriptions; 204, or 404."""
    body = schemas.json_body(schemas.PUSH_ENDPOINT_FIELDS)
    push.unsubscribe(get_session(), api_user(), body["endpoint"], client_address())
    return "", 204


@bp.post("/push/receipts")
def device_receipt():
    """`{"token", "state": "delivered" | "read"}` from a service worker; 204."""
    body = schemas.json_body(schemas.DEVICE_RECEIPT_FIELDS)
    receipt = push.record_device_receipt(
        get_session(),
        current_app.config["SECRET_KEY"],
        body["token"],
        body["state"],
        max_age_s=current_app.config["LINK_TTL_S"],
    )
    live().receipts_recorded([receipt])
    return jsonify({}), 204
