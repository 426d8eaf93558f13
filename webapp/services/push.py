"""Web Push: subscriptions, and sending one push (the job); the key is services/vapid.py.

A subscription is only accepted for a known push service's origin (Google, Mozilla,
Microsoft, Apple) or one in PUSH_ALLOWED_ORIGINS: the server POSTs to whatever endpoint
it stores, so any other URL would let a user make it call anything (SSRF). Nothing is
ever sent to an endpoint that was refused.

A push carries a receipt token: the service worker on the device reports `delivered`
(and `read` when the notification is clicked) with it, without a session or CSRF
token (a worker has neither). The token names one recipient's delivery of one
announcement, is signed with SECRET_KEY and expires after LINK_TTL_S.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask_babel import gettext
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from pywebpush import WebPusher
from requests.adapters import HTTPAdapter
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import errors, i18n, metrics
from ..db import session_scope, utcnow
from ..i18n import N_
from ..markup import plain_text
from ..models import (
    Channel,
    Delivery,
    DeliveryState,
    Notification,
    Priority,
    PushSubscription,
    User,
)
from . import audit, jobs, quiet_hours, reach, receipts, vapid
from .vapid import b64url, b64url_decode

log = logging.getLogger(__name__)

# A device refused this many times in a row (400/401/403: a key or signature the push
# service no longer takes) is dropped; the person can turn alerts on again.
MAX_REFUSALS = 3
RECEIPT_SALT = "schoolbell.push-receipt"
DEVICE_STATES = (DeliveryState.DELIVERED, DeliveryState.READ)  # what a worker may report
HTTP_EXTENSION = "schoolbell.push.http"
MAX_ENDPOINT_CHARS = 1024
MAX_PAYLOAD_BYTES = 3000  # the JSON; encrypted it stays well under the 4,096 bytes allowed
MIN_TTL_S = 60
RETRY_AFTER_DEFAULT_S = 60
ELLIPSIS = "\u2026"
# Known push services: exact hosts, and domains whose every host is the service's.
PUSH_HOSTS = frozenset({"fcm.googleapis.com", "web.push.apple.com"})
PUSH_DOMAINS = (".push.services.mozilla.com", ".notify.windows.com", ".push.apple.com")
DEFAULT_PORTS = {"https": 443, "http": 80}


# Receipts from devices ------------------------------------------------------------------


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


def public_key(app: Flask) -> str:
    """The VAPID public key, base64url: what `pushManager.subscribe` needs."""
    return vapid.of(app).public_key


# Subscriptions ---------------------------------------------------------------------------


def _origin(scheme: str, host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[scheme] else "")


def _normalised(origin: str) -> str:
    parts = urlsplit(origin)
    try:
        return _origin(parts.scheme, parts.hostname or "", parts.port)
    except (KeyError, ValueError):
        return origin


def endpoint_origin(endpoint: Any, allowed_origins: tuple[str, ...] = ()) -> str:
    """The origin of an endpoint Schoolbell may POST to; else a 422 (and no request)."""
    if (
        not isinstance(endpoint, str)
        or len(endpoint) > MAX_ENDPOINT_CHARS
        or not endpoint.isascii()
        or any(char <= " " or char in '\\"<>^`{|}\x7f' for char in endpoint)
    ):
        raise errors.INVALID_PUSH_ENDPOINT.error(max=MAX_ENDPOINT_CHARS)
    try:
        parts = urlsplit(endpoint)  # "https://[::1/x" (an unclosed IPv6 address) raises
    except ValueError:
        raise errors.INVALID_PUSH_ENDPOINT.error(max=MAX_ENDPOINT_CHARS) from None
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in DEFAULT_PORTS
        or not parts.hostname
        or port == -1
        or "@" in parts.netloc
        or parts.fragment
    ):
        raise errors.INVALID_PUSH_ENDPOINT.error(max=MAX_ENDPOINT_CHARS)
    origin = _origin(parts.scheme, parts.hostname, port)
    if origin in {_normalised(allowed) for allowed in allowed_origins}:
        return origin
    host = parts.hostname
    known = host in PUSH_HOSTS or any(
        host.endswith(domain) and len(host) > len(domain) for domain in PUSH_DOMAINS
    )
    if parts.scheme == "https" and port in (None, 443) and known:
        return origin
    raise errors.PUSH_SERVICE_NOT_ALLOWED.error(origin=origin)


def _p256dh(value: Any) -> str:
    """The browser's public key, checked to be a point on P-256; base64url."""
    try:
        raw = b64url_decode(value)
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError("not an uncompressed point")
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)  # on the curve?
    except ValueError:
        raise errors.INVALID_PUSH_KEY.error() from None
    return b64url(raw)


def _auth(value: Any) -> str:
    """The browser's 16-byte auth secret; base64url."""
    try:
        raw = b64url_decode(value)
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise errors.INVALID_PUSH_AUTH.error()
    return b64url(raw)


def subscribe(
    session: Session,
    user: User,
    info: Mapping[str, Any],
    user_agent: str | None,
    address: str | None,
    *,
    config: Mapping[str, Any],
) -> tuple[PushSubscription, bool]:
    """Save a browser's PushSubscription (`endpoint`, `keys.p256dh`, `keys.auth`) for
    `user`, and commit; return it and whether it is new (False: the same endpoint again,
    its keys updated). An endpoint another person subscribed on this device (a shared
    computer) moves to `user`. At the cap, the device that has gone longest without a
    push is dropped: browsers rotate endpoints, and dead ones pile up."""
    endpoint = info.get("endpoint")
    origin = endpoint_origin(endpoint, config["PUSH_ALLOWED_ORIGINS"])
    keys = info.get("keys") or {}
    p256dh, auth = _p256dh(keys.get("p256dh")), _auth(keys.get("auth"))
    user_agent = (user_agent or "")[:300] or None
    subject = f"user:{user.email}"
    existing = session.scalar(select(PushSubscription).where(PushSubscription.endpoint == endpoint))
    if existing is not None and existing.user_id == user.id:
        if (existing.p256dh, existing.auth) != (p256dh, auth):
            audit.record(
                session, "push.renewed", actor=user, subject=subject, address=address, origin=origin
            )
        existing.p256dh, existing.auth, existing.user_agent = p256dh, auth, user_agent
        session.commit()
        return existing, False
    _make_room(session, user, config["PUSH_MAX_SUBSCRIPTIONS_PER_USER"], address)
    if existing is not None:
        previous = session.get(User, existing.user_id)
        existing.user_id, existing.p256dh, existing.auth = user.id, p256dh, auth
        existing.user_agent, existing.created_at = user_agent, utcnow()
        existing.last_success_at, existing.failures = None, 0
        audit.record(
            session,
            "push.moved",
            actor=user,
            subject=subject,
            address=address,
            origin=origin,
            from_user=previous.email if previous else None,
        )
        session.commit()
        return existing, False
    subscription = PushSubscription(
        user_id=user.id, endpoint=endpoint, p256dh=p256dh, auth=auth, user_agent=user_agent
    )
    try:
        with session.begin_nested():
            session.add(subscription)
            session.flush()
    except IntegrityError:  # the same endpoint, subscribed at this moment by another tab?
        session.rollback()
        if session.scalar(select(PushSubscription.id).where(PushSubscription.endpoint == endpoint)):
            return subscribe(session, user, info, user_agent, address, config=config)
        raise
    audit.record(
        session,
        "push.subscribed",
        actor=user,
        subject=subject,
        address=address,
        origin=origin,
        device=device_name(user_agent),
    )
    session.commit()
    return subscription, True


def _make_room(session: Session, user: User, cap: int, address: str | None) -> None:
    """Drop `user`'s devices beyond cap - 1, those that last had a push longest ago first."""
    subscriptions = session.scalars(
        select(PushSubscription)
        .where(PushSubscription.user_id == user.id)
        .order_by(
            func.coalesce(PushSubscription.last_success_at, PushSubscription.created_at),
            PushSubscription.id,
        )
    ).all()
    for oldest in subscriptions[: max(len(subscriptions) - (cap - 1), 0)]:
        audit.record(
            session,
            "push.replaced",
            actor=user,
            subject=f"user:{user.email}",
            address=address,
            origin=_normalised(oldest.endpoint),
            device=device_name(oldest.user_agent),
        )
        session.delete(oldest)
    session.flush()


def unsubscribe(session: Session, user: User, endpoint: str, address: str | None = None) -> None:
    """Forget one of `user`'s subscriptions by its endpoint (the browser unsubscribed),
    and commit; 404 if none of theirs has it."""
    subscription = session.scalar(
        select(PushSubscription).where(
            PushSubscription.endpoint == endpoint, PushSubscription.user_id == user.id
        )
    )
    if subscription is None:
        raise errors.PUSH_SUBSCRIPTION_NOT_FOUND.error()
    _delete(session, user, subscription, "push.unsubscribed", address)


def remove(
    session: Session, user: User, subscription_id: int, address: str | None = None
) -> PushSubscription:
    """Remove one of `user`'s devices (the settings page), and commit; return it."""
    subscription = session.get(PushSubscription, subscription_id)
    if subscription is None or subscription.user_id != user.id:
        raise errors.DEVICE_NOT_FOUND.error(id=subscription_id)
    _delete(session, user, subscription, "push.removed", address)
    return subscription


def _delete(
    session: Session, user: User, subscription: PushSubscription, action: str, address: str | None
) -> None:
    audit.record(
        session,
        action,
        actor=user,
        subject=f"user:{user.email}",
        address=address,
        origin=_normalised(subscription.endpoint),
        device=device_name(subscription.user_agent),
    )
    session.delete(subscription)  # its queued pushes go with it (ON DELETE CASCADE)
    session.commit()


def subscriptions_of(session: Session, user: User) -> list[PushSubscription]:
    """`user`'s devices, newest first."""
    return list(
        session.scalars(
            select(PushSubscription)
            .where(PushSubscription.user_id == user.id)
            .order_by(PushSubscription.created_at.desc(), PushSubscription.id.desc())
        )
    )


# (substring of the user agent, name), first match wins: Edge and Opera also say Chrome,
# Chrome also says Safari.
BROWSERS = (
    ("Edg", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("FxiOS", "Firefox"),
    ("CriOS", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
)


# A device's name; English in the audit log and the API, translated on pages.
DEVICE_NAME = N_("%(browser)s on %(system)s")
SOME_BROWSER = N_("A browser on %(system)s")
UNKNOWN_BROWSER = N_("Unknown browser")


def device_name(user_agent: str | None, *, translated: bool = False) -> str:
    """A name people recognise their device by: "Chrome on Android"; in the current
    language when `translated` (pages), else English (the audit log, the API)."""
    say = gettext if translated else (lambda text, **values: text % values)
    ua = user_agent or ""
    browser = next((name for token, name in BROWSERS if token in ua), None)
    system = next((name for token, name in SYSTEMS if token in ua), None)
    if browser and system:
        return say(DEVICE_NAME, browser=browser, system=system)
    if browser:
        return browser
    return say(SOME_BROWSER, system=system) if system else say(UNKNOWN_BROWSER)


# Sending one push (the job) --------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingPush:
    """Everything one push needs, read from the database before any network call."""

    subscription_id: int
    delivery_id: int
    origin: str
    info: dict[str, Any]  # the PushSubscription as pywebpush takes it
    data: bytes  # the JSON message
    title_only: bytes  # the same without the body, for a service that says 413
    urgency: str
    topic: str
    ttl_s: int


def push_message(notification: Notification, receipt: str | None) -> dict[str, Any]:
    """The push message the service worker shows (its body is filled in by `encode`), in
    the current language (the job's `i18n.speaking`): the title's prefixes come along
    for the worker, which puts the priority's after the drill's."""
    message = {
        "type": "notification",
        "id": notification.id,
        "title": drill_title(notification, notification.title),
        "body": "",
        "priority": notification.priority.value,
        "require_ack": bool(notification.require_ack),
        "url": f"/inbox?open={notification.id}",
        "tag": str(notification.id),
        "receipt": receipt,
        "created_at": (notification.sent_at or notification.created_at).isoformat(),
        "drill": bool(notification.drill),
        "prefix": _prefix(TITLE_PREFIXES.get(notification.priority)),
    }
    if notification.drill:
        message["drill_prefix"] = _prefix(DRILL_PREFIX)
    return message


# The prefixes of a push's title (static/sw.js adds the priority's; it has the English
# ones built in for payloads without them).
TITLE_PREFIXES = {
    Priority.URGENT: N_("Urgent: %(title)s"),
    Priority.EMERGENCY: N_("EMERGENCY: %(title)s"),
}
DRILL_PREFIX = N_("DRILL: %(title)s")
CHANGE_PREFIXES = {reach.PUSH_REMIND: N_("Reminder: %(title)s")}
WITHDRAWN_PREFIX = N_("Withdrawn: %(title)s")
ALL_CLEAR_PREFIX = N_("All clear: %(title)s")


def _prefix(template: str | None) -> str:
    """A title template's prefix, translated: the template with the title left out."""
    return gettext(template, title="") if template else ""


def drill_title(notification: Notification, title: str) -> str:
    """A drill's push says so first, before anything else (static/sw.js keeps it in
    front of the priority's prefix): nobody must take an exercise for the real thing."""
    return gettext(DRILL_PREFIX, title=title) if notification.drill else title


def change_message(
    notification: Notification, kind: str, receipt: str | None
) -> tuple[dict[str, Any], str]:
    """A change push's message (under the announcement's tag, so it replaces what the
    device shows) and its body text."""
    message = push_message(notification, receipt)
    if kind == reach.PUSH_RETRACT:
        message.update(
            type="retract",
            title=drill_title(notification, gettext(WITHDRAWN_PREFIX, title=notification.title)),
            receipt=None,
        )
        return message, gettext("This announcement was withdrawn.")
    if kind == reach.PUSH_ALL_CLEAR:
        message.update(
            type="all_clear",
            title=drill_title(notification, gettext(ALL_CLEAR_PREFIX, title=notification.title)),
            receipt=None,
        )
        return message, notification.all_clear_message or ""
    change = CHANGE_PREFIXES.get(kind)
    title = gettext(change, title=notification.title) if change else notification.title
    message["title"] = drill_title(notification, title)
    return message, plain_text(notification.body_html)


def change_still_needed(
    notification: Notification, delivery: Delivery, user: User, kind: str
) -> str | None:
    """Why a queued change push is no longer needed (None: send it)."""
    if not user.active:
        return "the recipient was deactivated"
    if kind in (reach.PUSH_RETRACT, reach.PUSH_ALL_CLEAR):
        return None
    reason = reach.check_live(notification)
    if reason is not None:
        return reason
    if kind == reach.PUSH_REMIND:
        if delivery.state is DeliveryState.ACKNOWLEDGED:
            return "already confirmed"
        if notification.priority is not Priority.EMERGENCY and not user.push_enabled:
            return "the recipient turned pushes off"
    return None


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode(message: dict[str, Any], body: str, limit: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The message as UTF-8 JSON with `body`, cut (with an ellipsis) to fit `limit`."""
    data = _json({**message, "body": body})
    keep = len(body)
    while len(data) > limit and keep > 0:
        keep = max(keep - max(len(data) - limit, 1), 0)  # a character is at least a byte
        data = _json({**message, "body": body[:keep].rstrip() + ELLIPSIS if keep else ""})
    return data


def ttl_s(expires_at: datetime | None, max_ttl_s: int, now: datetime) -> int:
    """How long the push service keeps trying: until the announcement expires, at least a
    minute, at most `max_ttl_s` (never 0, pywebpush's default: an offline phone would
    never get it)."""
    if expires_at is None:
        return max(max_ttl_s, 1)
    return max(int(min(max((expires_at - now).total_seconds(), MIN_TTL_S), max_ttl_s)), 1)


def urgency(priority: Priority) -> str:
    """RFC 8030 Urgency: high wakes a sleeping phone at once."""
    return "normal" if priority is Priority.NORMAL else "high"


def _outgoing(session: Session, app: Flask, job: jobs.JobRef) -> OutgoingPush:
    """Read what the push needs, or Cancel when it is no longer needed."""
    # One query for the four rows (it runs for every push: 10,000 an announcement).
    row = session.execute(
        _PUSH_ROWS, {"delivery_id": job.delivery_id, "subscription_id": job.subscription_id}
    ).first()
    if row is None:
        raise jobs.Cancel("the announcement is gone")
    notification, delivery, user, subscription = row
    if subscription is None:
        raise jobs.Cancel("the device is no longer subscribed")
    if subscription.user_id != delivery.user_id:
        raise jobs.Cancel("the device now belongs to someone else")
    if job.kind == reach.PUSH:
        reason = reach.check_live(notification) or reach.push_still_needed(
            notification, delivery, user
        )
    else:
        reason = change_still_needed(notification, delivery, user, job.kind)
    if reason is not None:
        raise jobs.Cancel(reason)
    config = app.config
    held = quiet_hours.until(config, notification.priority, utcnow())
    if held is not None:
        raise jobs.Defer("quiet hours", held)
    receipt = receipt_token(config["SECRET_KEY"], delivery.user_id, notification.id)
    with app.app_context(), i18n.speaking(user.language, config):  # the recipient's language
        if job.kind == reach.PUSH:
            shown, body = push_message(notification, receipt), plain_text(notification.body_html)
        else:
            shown, body = change_message(notification, job.kind, receipt)
    return OutgoingPush(
        subscription_id=subscription.id,
        delivery_id=delivery.id,
        origin=_normalised(subscription.endpoint),
        info={
            "endpoint": subscription.endpoint,
            "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
        },
        data=encode(shown, body),
        title_only=encode(shown, ""),
        urgency=urgency(notification.priority),
        topic=f"n{notification.id}",
        ttl_s=ttl_s(notification.expires_at, config["PUSH_MAX_TTL_S"], utcnow()),
    )


class _PushHttp(requests.Session):
    """A requests session for push services: no redirects (a push service answers; it
    never sends us anywhere else, which would be an SSRF through the back door), and the
    environment's proxy settings read once per push service, not per push (requests
    scans every environment variable on each request: 0.7 ms of CPU, measured)."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple, dict] = {}

    def request(self, method, url, *args, **kwargs):
        kwargs["allow_redirects"] = False
        return super().request(method, url, *args, **kwargs)

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies:  # never the case for pushes: nothing to cache
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        key = (_normalised(url), stream, verify, cert)
        if key not in self._environment:
            self._environment[key] = super().merge_environment_settings(
                url, proxies, stream, verify, cert
            )
        return dict(self._environment[key])


def http_session(app: Flask) -> requests.Session:
    """The app's one HTTP session for pushes: connections to each push service stay
    open (TLS set up once, not per push), up to JOB_CONCURRENCY of them."""
    session = app.extensions.get(HTTP_EXTENSION)
    if session is None:
        session = _PushHttp()
        adapter = HTTPAdapter(
            pool_connections=8, pool_maxsize=app.config["JOB_CONCURRENCY"], max_retries=0
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        app.extensions[HTTP_EXTENSION] = session
    return session


def _post(app: Flask, push: OutgoingPush, data: bytes) -> requests.Response:
    """Encrypt and POST one push (aes128gcm), with the cached VAPID header."""
    timeout_s = app.config["PUSH_TIMEOUT_S"]
    headers = {
        "Authorization": vapid.of(app).authorization(push.origin),
        "Urgency": push.urgency,
        "Topic": push.topic,
    }
    try:
        return WebPusher(push.info, requests_session=http_session(app)).send(
            data=data,
            headers=headers,
            ttl=push.ttl_s,
            content_encoding="aes128gcm",
            timeout=timeout_s,
        )
    except requests.Timeout:
        raise jobs.RetryLater(f"{push.origin} did not answer within {timeout_s} s") from None
    except requests.RequestException as exc:
        raise jobs.RetryLater(f"{push.origin} unreachable ({type(exc).__name__})") from None


def retry_after_s(value: str | None, now: datetime | None = None) -> float:
    """Seconds to wait for a Retry-After header (seconds or an HTTP date; 60 without)."""
    if not value or not value.strip():
        return RETRY_AFTER_DEFAULT_S
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return RETRY_AFTER_DEFAULT_S
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        seconds = (when - (now or utcnow())).total_seconds()
    return min(max(seconds, 1.0), jobs.BACKOFF_MAX_S)


@jobs.handler(reach.PUSH)
@jobs.handler(reach.PUSH_UPDATE)
@jobs.handler(reach.PUSH_RETRACT)
@jobs.handler(reach.PUSH_ALL_CLEAR)
@jobs.handler(reach.PUSH_REMIND)
def send_push(app: Flask, job: jobs.JobRef) -> jobs.Record:
    """Send one announcement to one device; return what records its success (written
    with the job's end), or raise how the push service's answer ends the job."""
    with session_scope(app) as session:
        push = _outgoing(session, app, job)
    # The session is closed: no transaction (on SQLite, no write lock) is held while the
    # push service answers.
    jobs.yield_to_broadcasts(app)  # encrypting is the step's CPU: not during a broadcast
    response = _post(app, push, push.data)
    if response.status_code == 413:  # too big for this service: the title alone, once
        response = _post(app, push, push.title_only)
    _settle(app, job, push, response)
    return partial(_record_success, push, utcnow())


metrics.count_jobs(metrics.PUSHES, reach.PUSH, *reach.CHANGE_PUSHES)  # how they end, by result


def _record_success(push: OutgoingPush, now: datetime, session: Session) -> None:
    """A push service took the push: the delivery was pushed (first time kept), and the
    device works."""
    session.execute(_PUSHED, {"delivery_id": push.delivery_id, "now": now})
    session.execute(_DEVICE_WORKS, {"subscription_id": push.subscription_id, "now": now})


# Built once (they run for every push): building a statement costs more than running it.
_deliveries, _subscriptions = Delivery.__table__, PushSubscription.__table__
_PUSHED = (
    update(_deliveries)
    .where(_deliveries.c.id == bindparam("delivery_id"), _deliveries.c.pushed_at.is_(None))
    .values(pushed_at=bindparam("now", type_=_deliveries.c.pushed_at.type))
)
_DEVICE_WORKS = (
    update(_subscriptions)
    .where(_subscriptions.c.id == bindparam("subscription_id"))
    .values(
        last_success_at=bindparam("now", type_=_subscriptions.c.last_success_at.type), failures=0
    )
)
_PUSH_ROWS = (
    select(Notification, Delivery, User, PushSubscription)
    .join(Delivery, Delivery.notification_id == Notification.id)
    .join(User, User.id == Delivery.user_id)
    .outerjoin(PushSubscription, PushSubscription.id == bindparam("subscription_id"))
    .where(Delivery.id == bindparam("delivery_id"))
)


def _settle(app: Flask, job: jobs.JobRef, push: OutgoingPush, response: requests.Response) -> None:
    """Return if the push service took the push; otherwise record what its answer means
    and raise how it ends the job."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status in (404, 410):
        _expire(app, job, push, status)
        raise jobs.Cancel(f"subscription gone ({status})")
    if status == 429:
        raise jobs.RetryLater(
            f"429 from {push.origin}", after_s=retry_after_s(response.headers.get("Retry-After"))
        )
    if status >= 500:
        raise jobs.RetryLater(f"{status} from {push.origin}")
    # 400, 401, 403 (a VAPID or key problem), a 413 even for the title alone, a redirect:
    # trying again would get the same answer.
    with session_scope(app) as session:
        failures = session.scalar(
            update(PushSubscription)
            .where(PushSubscription.id == push.subscription_id)
            .values(failures=PushSubscription.failures + 1)
            .returning(PushSubscription.failures)
        )
        session.commit()
    detail = " ".join(response.text.split())[:200]
    log.warning("push to %s refused with %d: %s", push.origin, status, detail)
    if failures is not None and failures >= MAX_REFUSALS:
        _expire(app, job, push, status, action="push.dropped")
    raise jobs.GiveUp(f"{status} from {push.origin}: {detail}")


def _expire(
    app: Flask, job: jobs.JobRef, push: OutgoingPush, status: int, action: str = "push.expired"
) -> None:
    """The push service forgot the subscription (or refused it MAX_REFUSALS times in a
    row): delete it. Jobs keep their rows (the foreign key is SET NULL): its queued
    pushes are cancelled when they come up."""
    with session_scope(app) as session:
        subscription = session.get(PushSubscription, push.subscription_id)
        if subscription is None:
            return
        audit.record(
            session,
            action,
            subject=f"user:{subscription.user.email}",
            origin=push.origin,
            status=status,
            device=device_name(subscription.user_agent),
        )
        session.delete(subscription)
        session.commit()
    log.info("push subscription %d at %s is gone (%d)", push.subscription_id, push.origin, status)
