"""Web Push: VAPID keys, subscriptions, and sending one push (the job).

A push carries a receipt token: the service worker on the device reports `delivered`
(and `read` when the notification is clicked) with it, without a session or CSRF
token (a worker has neither). The token names one recipient's delivery of one
announcement, is signed with SECRET_KEY and expires after LINK_TTL_S.
"""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from .. import errors
from ..models import Channel, DeliveryState
from . import receipts

RECEIPT_SALT = "schoolbell.push-receipt"
DEVICE_STATES = (DeliveryState.DELIVERED, DeliveryState.READ)  # what a worker may report


def receipt_token(secret_key: str, user_id: int, notification_id: int) -> str:
    """The signed token a push carries for the device's receipts."""
    return URLSafeTimedSerializer(secret_key, salt=RECEIPT_SALT).dumps([user_id, notification_id])


def record_device_receipt(
    session: Session, secret_key: str, token: str, state: str, *, max_age_s: int
) -> receipts.Receipt:
    """A receipt from a device's service worker, authenticated by its push's token."""
    try:
        user_id, notification_id = URLSafeTimedSerializer(secret_key, salt=RECEIPT_SALT).loads(
            token, max_age=max_age_s
        )
    except SignatureExpired:
        raise errors.RECEIPT_TOKEN_EXPIRED.error() from None
    except (BadSignature, TypeError, ValueError):
        raise errors.INVALID_RECEIPT_TOKEN.error() from None
    if state not in {s.value for s in DEVICE_STATES}:
        raise errors.INVALID_DEVICE_STATE.error()
    return receipts.record_one(session, user_id, notification_id, state, Channel.PUSH)
