"""Web Push from the server's side, against the stand-in push service (tests/push_service.py):
what a device receives and how each answer of a push service is handled; which
subscriptions are accepted; the VAPID key."""

from __future__ import annotations

import os
import re
import stat
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from webapp.config import ConfigError
from webapp.db import get_session, session_scope, utcnow
from webapp.errors import DomainError
from webapp.models import AuditEvent, Delivery, Job, JobState, PushSubscription, User
from webapp.services import jobs, load_job_handlers, notifications, push, reach, receipts, vapid
from webapp.services.audience import AudienceSpec
from webapp.services.notifications import Draft

from .conftest import make_test_app
from .push_service import PushService

CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"


@pytest.fixture
def service():
    """The stand-in push service; every push the app sends must pass its checks."""
    with PushService() as service:
        yield service
    assert service.errors == []


@pytest.fixture
def app(database_url, tmp_path, service):
    """A test app that may push to the stand-in (and nowhere else but the real services)."""
    load_job_handlers()
    app = make_test_app(
        database_url,
        tmp_path,
        PUSH_ALLOWED_ORIGINS=service.origin,
        MAIL_FROM="Schoolbell <bell@school.test>",
        JOB_MAX_ATTEMPTS=3,
        PUSH_MAX_SUBSCRIPTIONS_PER_USER=3,
    )
    yield app
    app.extensions["schoolbell.db"].kw["bind"].dispose()


@pytest.fixture
def people(make_user):
    """(an administrator who sends, a student who receives), no passwords: fast."""
    return make_user("admin", password=None), make_user("student", password=None)


def subscribe(app, user, info, user_agent=CHROME_ANDROID):
    """push.subscribe as the API calls it; returns (subscription id, created)."""
    with app.app_context():
        session = get_session()
        subscription, created = push.subscribe(
            session, session.get(User, user.id), info, user_agent, "127.0.0.1", config=app.config
        )
        return subscription.id, created


def send(app, author, *recipients, **fields) -> int:
    """Send an announcement as the API does, pushes due at once; return its id."""
    fields = {"title": "Trip tomorrow", "body": "Bring **lunch**", **fields}
    with app.app_context():
        session = get_session()
        draft = Draft(**fields, audience=AudienceSpec(users=tuple(r.email for r in recipients)))
        prepared = notifications.prepare(session, session.get(User, author.id), draft)
        result = notifications.send(session, prepared, delays=reach.Delays(0, 3600))
        return result.notification.id


def run_due(app, *, now=None) -> list[tuple[jobs.JobRef, JobState | None]]:
    """Claim and run every job due (at `now`) until none is; what each ended in."""
    ran = []
    while True:
        with session_scope(app) as session:
            claimed = jobs.claim(session, limit=50, lease_s=60, now=now)
        if not claimed:
            return ran
        ran += [(job, jobs.run(app, job)) for job in claimed]


def push_jobs(app) -> list[Job]:
    with session_scope(app) as session:
        return list(session.scalars(select(Job).where(Job.kind == reach.PUSH).order_by(Job.id)))


def row(app, model, id_):
    with session_scope(app) as session:
        return session.get(model, id_)


def delivery_of(app, notification_id: int, user) -> Delivery:
    with session_scope(app) as session:
        return session.scalar(
            select(Delivery).where(
                Delivery.notification_id == notification_id, Delivery.user_id == user.id
            )
        )


def audited(app, action: str) -> list[AuditEvent]:
    with session_scope(app) as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


# --- what a device receives -----------------------------------------------------------


def test_a_push_reaches_the_device_encrypted_signed_and_recorded(app, service, people):
    admin, student = people
    phone = service.browser("phone")
    subscription_id, _ = subscribe(app, student, phone.subscription)
    notification_id = send(app, admin, student)

    run_due(app)

    [received] = service.received("phone")
    message = received.message
    assert message["type"] == "notification"
    assert (message["id"], message["title"], message["body"]) == (
        notification_id,
        "Trip tomorrow",
        "Bring lunch",
    )
    assert message["priority"] == "normal" and message["require_ack"] is False
    assert message["url"] == f"/inbox?open={notification_id}"
    assert message["tag"] == str(notification_id)
    assert received.headers["topic"] == f"n{notification_id}"
    assert int(received.headers["ttl"]) == app.config["PUSH_MAX_TTL_S"]  # no expiry
    assert received.claims["aud"] == service.origin
    assert received.claims["sub"] == "mailto:bell@school.test"  # from MAIL_FROM
    delivery = delivery_of(app, notification_id, student)
    assert delivery.pushed_at is not None
    assert delivery.state.value == "pending"  # sent is not seen: the worker reports that
    subscription = row(app, PushSubscription, subscription_id)
    assert subscription.last_success_at is not None and subscription.failures == 0
    assert [job.state for job in push_jobs(app)] == [JobState.DONE]


def test_the_receipt_a_push_carries_records_delivered_by_push(app, service, people):
    admin, student = people
    phone = service.browser("phone")
    subscribe(app, student, phone.subscription)
    notification_id = send(app, admin, student)
    run_due(app)
    [received] = service.received("phone")

    with app.app_context():
        push.record_device_receipt(
            get_session(),
            app.config["SECRET_KEY"],
            received.message["receipt"],
            "delivered",
            max_age_s=60,
        )
    delivery = delivery_of(app, notification_id, student)
    assert (delivery.state.value, delivery.channel.value) == ("delivered", "push")


@pytest.mark.parametrize(
    ("priority", "urgency"), [("normal", "normal"), ("urgent", "high"), ("emergency", "high")]
)
def test_urgent_and_emergency_pushes_wake_the_device(app, service, people, priority, urgency):
    admin, student = people
    phone = service.browser("phone")
    subscribe(app, student, phone.subscription)
    send(app, admin, student, priority=priority)
    run_due(app)
    [received] = service.received("phone")
    assert received.headers["urgency"] == urgency
    assert received.message["priority"] == priority


def test_the_push_service_keeps_it_only_until_the_announcement_expires(app, service, people):
    admin, student = people
    phone = service.browser("phone")
    subscribe(app, student, phone.subscription)
    send(app, admin, student, expires_at=utcnow() + timedelta(hours=1))
    run_due(app)
    [received] = service.received("phone")
    assert 3500 < int(received.headers["ttl"]) <= 3600


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [(None, 259_200), (timedelta(days=30), 259_200), (timedelta(seconds=5), 60)],
)
def test_ttl_is_clamped_between_a_minute_and_the_maximum(remaining, expected):
    now = utcnow()
    assert push.ttl_s(now + remaining if remaining else None, 259_200, now) == expected


def test_a_long_body_is_trimmed_so_the_push_stays_small(app, service, people):
    admin, student = people
    phone = service.browser("phone")
    subscribe(app, student, phone.subscription)
    send(app, admin, student, title="Ä" * 200, body="Wörter und mehr " * 1250)  # 20,000
    run_due(app)
    [received] = service.received("phone")
    assert len(received.plaintext) <= push.MAX_PAYLOAD_BYTES
    assert int(received.headers["content-length"]) < 4096
    body = received.message["body"]
    assert body.startswith("Wörter und mehr Wörter") and body.endswith("\u2026")
    assert received.message["title"] == "Ä" * 200


def test_one_vapid_header_serves_many_pushes(app, service, people):
    admin, student = people
    phone = service.browser("phone")
    subscribe(app, student, phone.subscription)
    send(app, admin, student)
    send(app, admin, student, title="Second")
    run_due(app)
    first, second = service.received("phone")
    assert first.headers["authorization"] == second.headers["authorization"]


def test_the_vapid_header_is_renewed_an_hour_before_it_expires(app):
    signer = vapid.of(app)
    now = 1_900_000_000
    header = signer.authorization("https://fcm.googleapis.com", now=now)
    later = now + vapid.TOKEN_TTL_S - vapid.RENEW_BEFORE_S
    assert signer.authorization("https://fcm.googleapis.com", now=later - 1) == header
    assert signer.authorization("https://fcm.googleapis.com", now=later) != header
    assert signer.authorization("https://web.push.apple.com", now=now) != header  # per aud


# --- how each answer is handled -------------------------------------------------------


def test_a_410_deletes_the_subscription(app, service, people):
    admin, student = people
    phone = service.browser("phone")
    subscription_id, _ = subscribe(app, student, phone.subscription)
    service.answer("phone", 410)
    send(app, admin, student)

    [(_job, outcome)] = [r for r in run_due(app) if r[0].kind == reach.PUSH]

    assert outcome is JobState.CANCELLED
    assert row(app, PushSubscription, subscription_id) is None
    [job] = push_jobs(app)  # this job's row stays, as the record of why
    assert job.last_error == "subscription gone (410)"
    [event] = audited(app, "push.expired")
    assert event.detail["status"] == 410 and event.detail["origin"] == service.origin
    send(app, admin, student, title="Next")
    run_due(app)
    assert len(service.received("phone")) == 1  # nothing more goes to it


def test_a_429_waits_as_long_as_the_service_asks(app, service, people):
    admin, student = people
    phone = service.browser("phone")
    subscribe(app, student, phone.subscription)
    service.answer("phone", (429, {"Retry-After": "30"}))
    send(app, admin, student)
    before = utcnow()

    run_due(app)

    [job] = push_jobs(app)
    assert job.state is JobState.QUEUED and job.attempts == 1
    assert 29 <= (job.due_at - before).total_seconds() <= 32
    run_due(app, now=utcnow() + timedelta(seconds=31))
    assert [p.status for p in service.received("phone")] == [429, 201]
    assert push_jobs(app)[0].state is JobState.DONE


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, 60), ("120", 120), ("Wed, 21 Oct 2015 07:28:00 GMT", 1), ("soon", 60)],
)
def test_retry_after_is_read_as_seconds_or_a_date(header, seconds):
    assert push.retry_after_s(header) == seconds


def test_a_retry_after_date_is_counted_from_now():
    now = utcnow().replace(microsecond=0)
    when = (now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert push.retry_after_s(when, now=now) == 90


def test_a_500_is_retried_with_backoff_then_given_up(app, service, people):
    admin, student = people
    phone = service.browser("phone")
    subscribe(app, student, phone.subscription)
    service.answer("phone", 500, 503, 502)
    send(app, admin, student)
    before = utcnow()

    run_due(app)
    [job] = push_jobs(app)
    assert job.state is JobState.QUEUED
    assert 4 <= (job.due_at - before).total_seconds() <= 7  # the queue's first backoff
    run_due(app, now=utcnow() + timedelta(hours=2))  # the later attempts, at once

    [job] = push_jobs(app)
    assert job.state is JobState.FAILED and job.attempts == app.config["JOB_MAX_ATTEMPTS"]
    assert "502" in job.last_error
    assert [p.status for p in service.received("phone")] == [500, 503, 502]


def test_an_unreachable_push_service_is_retried(app, people):
    admin, student = people
    with PushService() as gone:
        phone = gone.browser("phone")
    app.config["PUSH_ALLOWED_ORIGINS"] = (gone.origin,)
    subscribe(app, student, phone.subscription)
    send(app, admin, student)

    run_due(app)

    [job] = push_jobs(app)
    assert job.state is JobState.QUEUED and "unreachable" in job.last_error
    assert delivery_of(app, job.notification_id, student).pushed_at is None


def test_a_413_sends_the_title_alone_once_more(app, service, people):
    admin, student = people
    phone = service.browser("phone")
    subscribe(app, student, phone.subscription)
    service.answer("phone", 413)
    send(app, admin, student)
    run_due(app)
    too_big, title_only = service.received("phone")
    assert too_big.message["body"] == "Bring lunch" and too_big.status == 413
    assert (title_only.message["title"], title_only.message["body"]) == ("Trip tomorrow", "")
    assert push_jobs(app)[0].state is JobState.DONE


def test_a_413_for_the_title_alone_gives_up(app, service, people):
    admin, student = people
    phone = service.browser("phone")
    subscribe(app, student, phone.subscription)
    service.answer("phone", 413, 413)
    send(app, admin, student)
    run_due(app)
    assert len(service.received("phone")) == 2
    assert push_jobs(app)[0].state is JobState.FAILED


@pytest.mark.parametrize("status", [400, 401, 403])
def test_a_key_or_vapid_problem_gives_up_and_counts_a_failure(app, service, people, status):
    admin, student = people
    phone = service.browser("phone")
    subscription_id, _ = subscribe(app, student, phone.subscription)
    service.answer("phone", status)
    send(app, admin, student)
    run_due(app)
    [job] = push_jobs(app)
    assert job.state is JobState.FAILED and job.last_error.startswith(str(status))
    assert row(app, PushSubscription, subscription_id).failures == 1
    assert len(service.received("phone")) == 1


def test_a_device_refused_again_and_again_is_dropped(app, service, people):
    """A key the push service keeps refusing (400/401/403) costs a push per
    announcement forever; after MAX_REFUSALS in a row the device is removed."""
    admin, student = people
    phone = service.browser("phone")
    subscription_id, _ = subscribe(app, student, phone.subscription)
    service.answer("phone", *[403] * push.MAX_REFUSALS)
    for n in range(push.MAX_REFUSALS):
        assert row(app, PushSubscription, subscription_id) is not None
        send(app, admin, student, title=f"Notice {n}")
        run_due(app)
    assert len(service.received("phone")) == push.MAX_REFUSALS
    assert row(app, PushSubscription, subscription_id) is None


def test_the_endpoints_secret_path_never_reaches_the_logs(app, service, people, caplog):
    admin, student = people
    phone = service.browser("secret-path-xyz")
    subscribe(app, student, phone.subscription)
    service.answer("secret-path-xyz", 401)
    send(app, admin, student)
    run_due(app)
    assert service.origin in caplog.text
    assert "secret-path-xyz" not in caplog.text


# --- when no push is needed -----------------------------------------------------------


def test_a_delivery_a_tab_already_reported_is_not_pushed(app, service, people):
    admin, student = people
    phone = service.browser("phone")
    subscribe(app, student, phone.subscription)
    notification_id = send(app, admin, student)
    with session_scope(app) as session:  # the fan-out first: it queues the push
        [fan_out] = jobs.claim(session, limit=1, lease_s=60)
    jobs.run(app, fan_out)
    with app.app_context():
        receipts.record_one(get_session(), student.id, notification_id, "delivered")

    run_due(app)

    [job] = push_jobs(app)
    assert job.state is JobState.CANCELLED and "delivered" in job.last_error
    assert service.received("phone") == []
    assert delivery_of(app, notification_id, student).pushed_at is None


def test_every_device_of_the_recipient_gets_the_push(app, service, people):
    admin, student = people
    for name in ("phone", "laptop"):
        subscribe(app, student, service.browser(name).subscription)
    send(app, admin, student)
    run_due(app)
    assert len(service.received("phone")) == len(service.received("laptop")) == 1


def test_a_device_that_changed_hands_gets_no_push_meant_for_its_old_owner(
    app, service, people, make_user
):
    admin, student = people
    sibling = make_user("student", password=None)
    computer = service.browser("family-computer")
    subscribe(app, student, computer.subscription)
    send(app, admin, student)
    with session_scope(app) as session:
        [fan_out] = jobs.claim(session, limit=1, lease_s=60)
    jobs.run(app, fan_out)  # the push for the student is queued

    _id, created = subscribe(app, sibling, computer.subscription)  # the sibling signs in

    assert created is False
    [event] = audited(app, "push.moved")
    assert event.detail["from_user"] == student.email
    run_due(app)
    assert service.received("family-computer") == []
    assert "someone else" in push_jobs(app)[0].last_error


# --- which subscriptions are accepted -------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://fcm.googleapis.com/fcm/send/abc:APA91b",
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAAA",
        "https://wns2-by3p.notify.windows.com/w/?token=BQYAAA",
        "https://web.push.apple.com/QGuQyavXutnMH",
        "https://api.push.apple.com/3/device/abc",
        "https://FCM.googleapis.com:443/fcm/send/abc",
    ],
)
def test_known_push_services_are_accepted(app, people, service, endpoint):
    _admin, student = people
    info = {**service.browser("any").subscription, "endpoint": endpoint}
    _id, created = subscribe(app, student, info)
    assert created is True
    assert service.requests == []  # subscribing never calls out


@pytest.mark.parametrize(
    ("endpoint", "code"),
    [
        ("https://evil.example/push/x", "push_service_not_allowed"),
        ("http://fcm.googleapis.com/fcm/send/x", "push_service_not_allowed"),
        ("https://fcm.googleapis.com:8443/fcm/send/x", "push_service_not_allowed"),
        ("https://fcm.googleapis.com.evil.example/x", "push_service_not_allowed"),
        ("https://push.apple.com/x", "push_service_not_allowed"),
        ("https://notify.windows.com.attacker.net/x", "push_service_not_allowed"),
        ("https://169.254.169.254/latest/meta-data", "push_service_not_allowed"),
        ("https://fcm.googleapis.com@evil.example/x", "invalid_push_endpoint"),
        ("https://evil.example\\@fcm.googleapis.com/x", "invalid_push_endpoint"),
        ("https://fcm.googleapis.com/x y", "invalid_push_endpoint"),
        ("https://fcm.googleapis.com/x#frag", "invalid_push_endpoint"),
        ("ftp://fcm.googleapis.com/x", "invalid_push_endpoint"),
        ("/push/relative", "invalid_push_endpoint"),
        ("https://fcm.googleapis.com/" + "x" * 1000, "invalid_push_endpoint"),
    ],
)
def test_other_endpoints_are_refused_and_never_called(app, people, service, endpoint, code):
    _admin, student = people
    info = {**service.browser("x").subscription, "endpoint": endpoint}
    with pytest.raises(DomainError) as refused:
        subscribe(app, student, info)
    assert (refused.value.status, refused.value.code) == (422, code)


def test_a_local_address_not_in_the_allowlist_is_refused_and_never_called(app, people, service):
    _admin, student = people
    with PushService() as other:  # a real server on 127.0.0.1, not allowlisted
        info = other.browser("x").subscription
        with pytest.raises(DomainError) as refused:
            subscribe(app, student, info)
        send(app, people[0], student)
        run_due(app)
        assert other.requests == []
    assert refused.value.code == "push_service_not_allowed"
    assert push_jobs(app) == []


def _point_off_the_curve() -> str:
    x = y = b"\x01" * 32
    return vapid.b64url(b"\x04" + x + y)


def _compressed_point() -> str:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    return vapid.b64url(
        public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    )


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"p256dh": _point_off_the_curve()}, "P-256"),
        ({"p256dh": _compressed_point()}, "P-256"),
        ({"p256dh": "not base64!"}, "P-256"),
        ({"p256dh": vapid.b64url(os.urandom(64))}, "P-256"),
        ({"auth": vapid.b64url(os.urandom(15))}, "16 bytes"),
        ({"auth": "***"}, "16 bytes"),
    ],
)
def test_keys_that_cannot_encrypt_are_refused(app, people, service, keys, message):
    _admin, student = people
    info = service.browser("x").subscription
    info = {**info, "keys": {**info["keys"], **keys}}
    with pytest.raises(DomainError) as refused:
        subscribe(app, student, info)
    assert refused.value.status == 422 and message in refused.value.message


def test_padded_keys_are_accepted_and_stored_unpadded(app, people, service):
    _admin, student = people
    info = service.browser("x").subscription
    keys = {name: value + "=" * (-len(value) % 4) for name, value in info["keys"].items()}
    subscription_id, _ = subscribe(app, student, {**info, "keys": keys})
    assert row(app, PushSubscription, subscription_id).p256dh == info["keys"]["p256dh"]


def test_the_same_endpoint_again_updates_it(app, people, service):
    _admin, student = people
    browser = service.browser("phone")
    first_id, first = subscribe(app, student, browser.subscription, CHROME_ANDROID)
    renewed = service.browser("phone")  # same endpoint, new keys
    again_id, again = subscribe(app, student, renewed.subscription, FIREFOX_WINDOWS)
    assert (first, again, again_id) == (True, False, first_id)
    saved = row(app, PushSubscription, first_id)
    assert saved.p256dh == renewed.p256dh and saved.user_agent == FIREFOX_WINDOWS
    assert len(audited(app, "push.subscribed")) == 1
    assert len(audited(app, "push.renewed")) == 1


def test_at_the_cap_the_stalest_device_makes_room(app, people, service):
    _admin, student = people
    a, b, c = (subscribe(app, student, service.browser(n).subscription)[0] for n in "abc")
    with session_scope(app) as session:  # a had a push lately; b and c never did
        session.get(PushSubscription, a).last_success_at = utcnow()
        session.commit()

    d, created = subscribe(app, student, service.browser("d").subscription)

    assert created is True
    with session_scope(app) as session:
        left = session.scalars(
            select(PushSubscription.id).where(PushSubscription.user_id == student.id)
        ).all()
    assert sorted(left) == sorted([a, c, d])  # b made room
    assert row(app, PushSubscription, b) is None
    [event] = audited(app, "push.replaced")
    assert event.detail["origin"] == service.origin


def test_unsubscribe_and_remove_touch_only_ones_own_devices(app, people, service, make_user):
    _admin, student = people
    other = make_user("guardian", password=None)
    phone = service.browser("phone")
    phone_id, _ = subscribe(app, student, phone.subscription)
    laptop_id, _ = subscribe(app, student, service.browser("laptop").subscription)
    with app.app_context():
        session = get_session()
        with pytest.raises(DomainError) as not_theirs:
            push.unsubscribe(session, session.get(User, other.id), phone.endpoint)
        assert not_theirs.value.status == 404
        with pytest.raises(DomainError):
            push.remove(session, session.get(User, other.id), laptop_id)
        session.rollback()
        push.unsubscribe(session, session.get(User, student.id), phone.endpoint)
        push.remove(session, session.get(User, student.id), laptop_id)
    assert row(app, PushSubscription, phone_id) is None
    assert row(app, PushSubscription, laptop_id) is None
    assert len(audited(app, "push.unsubscribed")) == len(audited(app, "push.removed")) == 1


@pytest.mark.parametrize(
    ("user_agent", "name"),
    [
        (CHROME_ANDROID, "Chrome on Android"),
        (FIREFOX_WINDOWS, "Firefox on Windows"),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Safari on iPhone",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Edge on Windows",
        ),
        (None, "Unknown browser"),
    ],
)
def test_devices_are_named_after_their_browser(user_agent, name):
    assert push.device_name(user_agent) == name


# --- the VAPID key --------------------------------------------------------------------


def test_the_key_is_generated_once_and_survives_a_restart(database_url, tmp_path):
    first = make_test_app(database_url, tmp_path)
    key = push.public_key(first)
    path = tmp_path / vapid.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    restarted = make_test_app(database_url, tmp_path)
    assert push.public_key(restarted) == key
    assert len(vapid.b64url_decode(key)) == 65 and vapid.b64url_decode(key)[0] == 4
    for app in (first, restarted):
        app.extensions["schoolbell.db"].kw["bind"].dispose()


@pytest.mark.parametrize("form", ["raw", "pem"])
def test_the_key_can_be_given_in_the_environment(database_url, tmp_path, monkeypatch, form):
    key = ec.generate_private_key(ec.SECP256R1())
    value = (
        vapid.raw_private_key(key)
        if form == "raw"
        else key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    )
    monkeypatch.setenv("SCHOOLBELL_VAPID_PRIVATE_KEY", value)
    app = make_test_app(database_url, tmp_path)
    assert push.public_key(app) == vapid.raw_public_key(key)
    assert not (tmp_path / vapid.KEY_FILE).exists()
    app.extensions["schoolbell.db"].kw["bind"].dispose()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VAPID_PRIVATE_KEY", "not-a-key"),
        ("VAPID_PRIVATE_KEY", vapid.b64url(b"\xff" * 32)),  # beyond the curve's order
        ("VAPID_SUBJECT", "it@school.example"),
        ("VAPID_SUBJECT", "http://school.example"),
        ("VAPID_SUBJECT", "mailto:"),
    ],
)
def test_a_bad_vapid_setting_stops_start_up_naming_it(
    database_url, tmp_path, monkeypatch, name, value
):
    monkeypatch.setenv(f"SCHOOLBELL_{name}", value)
    with pytest.raises(ConfigError, match=f"SCHOOLBELL_{name}"):
        make_test_app(database_url, tmp_path)


@pytest.mark.parametrize(
    ("settings", "subject"),
    [
        ({"VAPID_SUBJECT": "https://school.example"}, "https://school.example"),
        ({"MAIL_FROM": "Bell <bell@school.example>"}, "mailto:bell@school.example"),
        (
            {"PUBLIC_URL": "https://bell.school.example:8443/"},
            "mailto:schoolbell@bell.school.example",
        ),
        ({}, "mailto:schoolbell@127.0.0.1"),
    ],
)
def test_the_subject_comes_from_the_settings(database_url, tmp_path, settings, subject):
    app = make_test_app(database_url, tmp_path, **settings)
    assert vapid.of(app).subject == subject
    app.extensions["schoolbell.db"].kw["bind"].dispose()


def test_pushes_are_counted_once_per_delivery(app, service, people):
    """pushed_at is the first push a service took: a second device does not move it."""
    admin, student = people
    subscribe(app, student, service.browser("phone").subscription)
    subscribe(app, student, service.browser("laptop").subscription)
    notification_id = send(app, admin, student)
    with session_scope(app) as session:
        [fan_out] = jobs.claim(session, limit=1, lease_s=60)
    jobs.run(app, fan_out)
    with session_scope(app) as session:
        first, second = jobs.claim(session, limit=2, lease_s=60)
    jobs.run(app, first)
    stamped = delivery_of(app, notification_id, student).pushed_at
    jobs.run(app, second)
    assert delivery_of(app, notification_id, student).pushed_at == stamped


def test_vapid_keys_prints_a_pair_the_server_accepts(app, database_url, tmp_path):
    result = app.test_cli_runner().invoke(args=["vapid-keys"])
    assert result.exit_code == 0, result.output
    private = re.search(r"^SCHOOLBELL_VAPID_PRIVATE_KEY=(\S+)$", result.output, re.M).group(1)
    public = re.search(r"^Public key: (\S+)$", result.output, re.M).group(1)
    configured = make_test_app(database_url, tmp_path / "other", VAPID_PRIVATE_KEY=private)
    assert push.public_key(configured) == public != push.public_key(app)
    configured.extensions["schoolbell.db"].kw["bind"].dispose()


# --- the stand-in is as strict as a real push service --------------------------------


def test_the_stand_in_refuses_what_a_real_service_would(app):
    """pywebpush's defaults (TTL 0, no VAPID) and a wrong audience are answered 400."""
    from pywebpush import WebPusher

    with PushService() as strict:
        phone = strict.browser("phone")
        plain = WebPusher(phone.subscription).send(data=b"{}", timeout=5)
        header = vapid.of(app).authorization("https://elsewhere.example")
        wrong_aud = WebPusher(phone.subscription).send(
            data=b"{}", headers={"Authorization": header}, ttl=60, timeout=5
        )
        unknown = WebPusher({**phone.subscription, "endpoint": f"{strict.origin}/push/nobody"})
        assert (plain.status_code, wrong_aud.status_code) == (400, 400)
        assert unknown.send(data=b"{}", ttl=60, timeout=5).status_code == 404
        assert strict.received("phone") == []
        assert len(strict.errors) == 2
        assert "TTL" in strict.errors[0] and "aud" in strict.errors[1]
