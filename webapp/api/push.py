"""API views for Web Push: receipts from devices' service workers."""

from __future__ import annotations

from flask import current_app, jsonify

from ..db import get_session
from ..realtime.live import live
from ..services import push
from . import bp, schemas

# Authenticated by the token in the push itself: no session, API token or CSRF.
TOKEN_AUTHENTICATED = {"api.device_receipt"}


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
