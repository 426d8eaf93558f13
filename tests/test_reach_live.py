"""Reaching people with no tab open, end to end: a real gunicorn + gevent server and its
job runner, a local push service that decrypts every push and checks its VAPID
signature (tests/push_service.py), a real SMTP server (tests/smtp_server.py), real
WebSocket tabs. Delays are cut to a second or two; the rules are the production ones."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest
from sqlalchemy import func, select

from webapp.db import session_scope
from webapp.models import Delivery, Job, JobState, PushSubscription

from .conftest import TEST_SECRETS, make_test_app
from .helpers import wait_for
from .push_service import PushService
from .school import Api, LiveSchool, build_school
from .server import ROOT

PUSH_AFTER_S = 1
EMAIL_AFTER_S = 2


def reach_env(push_service, smtp=None, **extra) -> dict[str, str]:
    env = {
        "PUSH_AFTER_S": str(PUSH_AFTER_S),
        "EMAIL_AFTER_S": str(EMAIL_AFTER_S),
        "PUSH_ALLOWED_ORIGINS": push_service.origin,
        "JOB_POLL_INTERVAL_MS": "200",
        "VAPID_SUBJECT": "mailto:it@school.test",
    }
    if smtp is not None:
        env |= {"SMTP_URL": smtp.url, "MAIL_FROM": "Schoolbell <bell@school.test>"}
    return env | extra


@pytest.fixture
def reach_school(app, database_url, live_server_factory, push_service, smtp, tmp_path):
    """The test school behind a server whose pushes and e-mails go to the stand-ins."""
    school = build_school(app)
    server = live_server_factory(
        database_url, **reach_env(push_service, smtp, PUBLIC_URL="http://placeholder")
    )
    live = LiveSchool(school, server)
    yield live
    live.close()


def subscribe(live: LiveSchool, push_service: PushService, handle: str) -> dict:
    """Subscribe a fake browser of `handle` through the API, as an embedded page would
    (a client JWT as Bearer); returns its PushSubscription JSON."""
    browser = push_service.browser(handle)
    token = live.api.client_token(live.school.emails[handle])
    status, body = Api(live.server.url, token).call(
        "POST", "/push/subscriptions", browser.subscription
    )
    assert status == 201, body
    return browser.subscription


def pushes(push_service, handle: str) -> list:
    return [p for p in push_service.received(handle) if p.status in (200, 201)]


def delivery(app, notification_id: int, user_id: int) -> Delivery:
    with session_scope(app) as session:
        return session.scalar(
            select(Delivery).where(
                Delivery.notification_id == notification_id, Delivery.user_id == user_id
            )
        )


def test_no_tab_gets_one_push_and_an_open_tab_gets_none(app, reach_school, push_service):
    live, ids = reach_school, reach_school.school.ids
    for handle in ("s7b_1", "s7b_2"):
        subscribe(live, push_service, handle)
    tab = live.tab("s7b_2")
    sent = live.api.send(
        "Trip cancelled",
        "The **museum** is closed.",
        targets={"users": [live.school.emails["s7b_1"], live.school.emails["s7b_2"]]},
    )
    message = tab.expect("notification")
    tab.ack(message["id"], "delivered")  # as schoolbell.js does when it shows the alert
    wait_for(lambda: pushes(push_service, "s7b_1"), timeout=10)
    (push,) = pushes(push_service, "s7b_1")
    assert push.message["title"] == "Trip cancelled"
    assert push.message["id"] == sent["id"]
    assert "museum" in push.message["body"] and "**" not in push.message["body"]
    assert int(push.headers["ttl"]) > 0
    assert push.headers["urgency"] == "normal"
    time.sleep(PUSH_AFTER_S + 1.5)  # long past the push of s7b_2, had it been due
    assert pushes(push_service, "s7b_2") == []
    assert len(pushes(push_service, "s7b_1")) == 1
    assert push_service.errors == []
    reached = delivery(app, sent["id"], ids["s7b_1"])
    assert reached.pushed_at is not None and reached.state.value == "pending"
    _status, body = live.api.call("GET", f"/notifications/{sent['id']}")
    assert body["channels"]["pushed"] == 1 and body["channels"]["tab"] == 1


def test_an_emergency_pushes_at_once_to_every_device(reach_school, push_service):
    live = reach_school
    subscribe(live, push_service, "s7b_1")
    tab = live.tab("s7b_1")
    started = time.monotonic()
    live.api.send("Lockdown", "Stay inside.", priority="emergency", targets={"everyone": True})
    tab.ack(tab.expect("notification")["id"], "delivered")
    wait_for(lambda: pushes(push_service, "s7b_1"), timeout=10)
    assert time.monotonic() - started < PUSH_AFTER_S + 5
    (push,) = pushes(push_service, "s7b_1")
    assert push.headers["urgency"] == "high"
    assert push.message["priority"] == "emergency"


def test_a_gone_subscription_is_deleted(app, reach_school, push_service):
    live = reach_school
    subscription = subscribe(live, push_service, "s7b_1")
    push_service.answer("s7b_1", 410)
    live.api.send("Trip", "Body", targets={"users": [live.school.emails["s7b_1"]]})
    wait_for(lambda: push_service.received("s7b_1"), timeout=10)

    def gone() -> bool:
        with session_scope(app) as session:
            return (
                session.scalar(
                    select(PushSubscription).where(
                        PushSubscription.endpoint == subscription["endpoint"]
                    )
                )
                is None
            )

    wait_for(gone, timeout=5)


def test_a_rate_limited_push_is_tried_again_after_retry_after(reach_school, push_service):
    live = reach_school
    subscribe(live, push_service, "s7b_1")
    push_service.answer("s7b_1", (429, {"Retry-After": "2"}), 201)
    live.api.send("Trip", "Body", targets={"users": [live.school.emails["s7b_1"]]})
    wait_for(lambda: len(push_service.received("s7b_1")) == 2, timeout=15)
    first, second = push_service.received("s7b_1")
    assert (first.status, second.status) == (429, 201)
    assert second.at - first.at >= 1.9
    assert second.message["title"] == "Trip"


def test_the_guardian_without_a_device_gets_one_email_whose_links_work_once(
    app, reach_school, smtp
):
    live, emails = reach_school, reach_school.school.emails
    tab = live.tab("s7b_1")
    sent = live.api.send(
        "Consent form",
        "Please confirm the **trip**.",
        require_ack=True,
        targets={"classes": [{"name": "7b", "audience": ["students", "guardians"]}]},
    )
    tab.ack(tab.expect("notification")["id"], "delivered")
    time.sleep(EMAIL_AFTER_S / 2)
    assert smtp.messages == []  # not before the delay
    # Everyone in 7b but s7b_1 (whose tab showed it) gets one e-mail after the delay.
    smtp.wait_for_messages(5, timeout=15)
    time.sleep(1)
    recipients = sorted(m["To"].addresses[0].addr_spec for m in smtp.messages)
    assert recipients == sorted(emails[h] for h in ("s7b_2", "s7b_3", "g7b_1", "g7b_2", "g7b_3"))
    mail = next(m for m in smtp.messages if emails["g7b_1"] in str(m["To"]))
    assert "Consent form" in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()
    base = "http://placeholder"
    open_link = re.search(re.escape(base) + r"(/l/open/\S+)", text).group(1)
    confirm_link = re.search(re.escape(base) + r"(/l/confirm/\S+)", text).group(1)
    url = live.server.url

    # The open link shows the announcement without signing in and records `read`.
    with urllib.request.urlopen(url + open_link, timeout=10) as response:
        assert "Consent form" in response.read().decode()
    g1 = delivery(app, sent["id"], live.school.ids["g7b_1"])
    assert g1.state.value == "read" and g1.channel.value == "email"
    with pytest.raises(urllib.error.HTTPError) as used:
        urllib.request.urlopen(url + open_link, timeout=10)
    assert used.value.code == 410
    used.value.close()

    # The confirm link: GET shows a form (changes nothing), POST confirms, once.
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(url + confirm_link, timeout=10) as response:
        page = response.read().decode()
    assert delivery(app, sent["id"], live.school.ids["g7b_1"]).state.value == "read"
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"csrf_token": token}).encode()
    with opener.open(url + confirm_link, data=form, timeout=10) as response:
        response.read()
    assert delivery(app, sent["id"], live.school.ids["g7b_1"]).state.value == "acknowledged"
    with pytest.raises(urllib.error.HTTPError) as again:
        opener.open(url + confirm_link, data=form, timeout=10)
    assert again.value.code == 410
    again.value.close()
    tampered = confirm_link[:-3] + ("aaa" if not confirm_link.endswith("aaa") else "bbb")
    with pytest.raises(urllib.error.HTTPError) as bad:
        opener.open(url + tampered, timeout=10)
    assert bad.value.code == 400
    bad.value.close()


def test_two_processes_push_each_device_exactly_once(postgres, tmp_path, push_service):
    """Two servers on one PostgreSQL database, both running jobs: 40 devices, one push
    each, never two."""
    url = postgres.create()
    app = make_test_app(url, tmp_path)
    school = build_school(app)
    from .server import LiveServer

    env = {
        "SCHOOLBELL_DATABASE_URL": url,
        "SCHOOLBELL_SECRET_KEY": TEST_SECRETS["SECRET_KEY"],
        "SCHOOLBELL_JWT_SECRET": TEST_SECRETS["JWT_SECRET"],
        "SCHOOLBELL_JOB_CONCURRENCY": "4",
        **{f"SCHOOLBELL_{k}": v for k, v in reach_env(push_service).items()},
    }
    servers = [LiveServer(env, tmp_path / f"server-{n}.log").start() for n in range(2)]
    try:
        api = Api(servers[0].url, school.api_token)
        handles = [h for h in school.ids if h.startswith(("s7", "g7"))]
        devices = {}
        for handle in handles:
            for n in range(3):
                name = f"{handle}-{n}"
                browser = push_service.browser(name)
                status, body = Api(
                    servers[n % 2].url, api.client_token(school.emails[handle])
                ).call("POST", "/push/subscriptions", browser.subscription)
                assert status == 201, body
                devices[name] = handle
        api.send("Snow day", "School is closed.", targets={"everyone": True})
        wait_for(lambda: all(push_service.received(name) for name in devices), timeout=30)
        time.sleep(2)
        assert {name: len(push_service.received(name)) for name in devices} == {
            name: 1 for name in devices
        }
        assert push_service.errors == []
        with session_scope(app) as session:
            ran = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.kind == "push", Job.state == JobState.DONE)
            )
        assert ran == len(devices)
    finally:
        for server in servers:
            server.stop()
        app.extensions["schoolbell.db"].kw["bind"].dispose()


def test_jobs_due_while_no_server_ran_go_out_at_start_and_the_worker_command_runs_them(
    app, database_url, live_server_factory, push_service, tmp_path
):
    """A send committed while nothing runs jobs (the web process has JOBS_IN_PROCESS
    off): `flask --app wsgi worker` pushes it when it starts."""
    school = build_school(app)
    server = live_server_factory(database_url, **reach_env(push_service, JOBS_IN_PROCESS="false"))
    live = LiveSchool(school, server)
    subscribe(live, push_service, "s7b_1")
    live.api.send("Trip", "Body", targets={"users": [school.emails["s7b_1"]]})
    time.sleep(PUSH_AFTER_S + 1.5)
    assert push_service.received("s7b_1") == []  # nobody runs jobs
    env = {**server.env, "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: pushes(push_service, "s7b_1"), timeout=20)
        assert pushes(push_service, "s7b_1")[0].message["title"] == "Trip"
    finally:
        worker.terminate()
        worker.wait(timeout=10)
        log.close()


def test_the_status_page_shows_live_how_each_recipient_was_reached(reach_school, push_service):
    """A staff socket watching the announcement gets the status with the tab, then the
    push that went out, without reloading."""
    from .helpers import session_cookie, signed_in
    from .wsclient import WSClient

    live = reach_school
    subscribe(live, push_service, "s7b_1")
    tab = live.tab("s7b_2")
    sent = live.api.send(
        "Trip", "Body", targets={"users": [live.school.emails[h] for h in ("s7b_1", "s7b_2")]}
    )
    url = live.server.url
    browser = signed_in(url, live.school.emails["admin"])
    dashboard = WSClient(
        url, cookie=session_cookie(browser), origin=url, query=f"watch=notification:{sent['id']}"
    ).connect()
    assert 'data-sent="push">0<' in dashboard.recv()
    tab.ack(tab.expect("notification")["id"], "delivered")
    seen = []
    while not any('data-sent="push">1<' in html for html in seen):
        seen.append(dashboard.recv(timeout=10))
    assert '<dd data-channel="tab">1</dd>' in seen[-1]
    assert '<dd data-channel="not_yet">1</dd>' in seen[-1]


def test_pushes_due_while_the_server_was_down_go_out_when_it_starts(
    database_url, tmp_path, live_server_factory, push_service
):
    """An announcement committed while no server ran (a CLI, another host): the web
    process's own runner pushes it as soon as it starts."""
    from webapp.db import get_session
    from webapp.models import User
    from webapp.services import notifications, push, reach
    from webapp.services.audience import AudienceSpec

    app = make_test_app(database_url, tmp_path, PUSH_ALLOWED_ORIGINS=push_service.origin)
    school = build_school(app)
    phone = push_service.browser("phone")
    with app.app_context():
        session = get_session()
        student = session.get(User, school.ids["s7b_1"])
        push.subscribe(session, student, phone.subscription, None, "127.0.0.1", config=app.config)
        draft = notifications.Draft(
            title="Snow day", body="Closed.", audience=AudienceSpec(users=(student.email,))
        )
        prepared = notifications.prepare(session, session.get(User, school.ids["admin"]), draft)
        notifications.send(session, prepared, delays=reach.Delays(0, 3600))
    time.sleep(1)
    assert push_service.received("phone") == []
    live_server_factory(database_url, **reach_env(push_service))
    (pushed,) = push_service.wait_for("phone", timeout_s=15)
    assert pushed.message["title"] == "Snow day" and pushed.status == 201
    app.extensions["schoolbell.db"].kw["bind"].dispose()
