"""Prometheus metrics at /metrics: who may scrape, what a scrape says, and that it adds up
over several gunicorn workers (a real server, real tabs, prometheus-client's parser)."""

from __future__ import annotations

import glob
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import multiprocess
from prometheus_client.parser import text_string_to_metric_families

from webapp import config, gunicorn_conf, metrics
from webapp.db import session_scope
from webapp.services import jobs

from .conftest import TEST_SECRETS, make_test_app
from .databases import sqlite_copy
from .helpers import wait_for
from .school import LiveSchool, build_school
from .server import LiveServer

TOKEN = "metrics-token-" + "m" * 40
TO_7B = {"classes": [{"name": "7b", "audience": ["students", "guardians", "teachers"]}]}
# One tab each: a receipt is then one delivery, whichever worker writes it.
PEOPLE = ["s7b_1", "s7b_2", "g7b_1", "g7b_2", "t7b"]


class Scrape:
    """One parsed /metrics answer: sample values by name and labels."""

    def __init__(self, text: str):
        self.text = text
        self.samples = [
            sample for family in text_string_to_metric_families(text) for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sample's value (0 when it is absent, as for a counter not yet bumped)."""
        for sample in self.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
        return 0.0

    def has(self, name: str) -> bool:
        return any(sample.name == name for sample in self.samples)

    def labels(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


def get(url: str, headers: dict | None = None) -> tuple[int, dict, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def scrape(server: LiveServer) -> Scrape:
    status, headers, body = get(server.url + "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain")
    return Scrape(body)


# A real server with two workers ----------------------------------------------------------


@dataclass
class Metered:
    live: LiveSchool
    server: LiveServer
    app: object  # the test's own app on the same database


@pytest.fixture
def metered(sqlite_template, tmp_path, redis_server):
    """(LiveSchool, LiveServer): two gevent workers, a Redis broker, /metrics with a
    token; pushes due at once but no job runner, so their fan-outs wait in the queue."""
    url = sqlite_copy(sqlite_template, tmp_path)
    app = make_test_app(url, tmp_path)
    school = build_school(app)
    server = LiveServer(
        {
            "SCHOOLBELL_DATABASE_URL": url,
            "SCHOOLBELL_SECRET_KEY": TEST_SECRETS["SECRET_KEY"],
            "SCHOOLBELL_JWT_SECRET": TEST_SECRETS["JWT_SECRET"],
            "SCHOOLBELL_WORKERS": "2",
            "SCHOOLBELL_BROKER_URL": redis_server.url,
            "SCHOOLBELL_BROKER_PROBE_INTERVAL_S": "1",
            "SCHOOLBELL_METRICS_TOKEN": TOKEN,
            "SCHOOLBELL_JOBS_IN_PROCESS": "false",
            "SCHOOLBELL_PUSH_AFTER_S": "0",
        },
        tmp_path / "gunicorn.log",
        workers=2,
    ).start()
    live = LiveSchool(school, server)
    yield Metered(live, server, app)
    live.close()
    server.stop()
    app.extensions["schoolbell.db"].kw["bind"].dispose()


def written_per_worker(server: LiveServer, notification_id: int) -> dict[str, int]:
    """pid -> sockets that worker wrote this announcement to (from its log lines, which
    may lag a moment behind the tabs)."""
    pattern = re.compile(
        rf"\[(\d+)\] \[INFO\] [\w.]+: notification {notification_id}: written to (\d+) sockets"
    )
    deadline = time.monotonic() + 1
    while True:
        found = {pid: int(n) for pid, n in pattern.findall(server.log()) if int(n)}
        if len(found) == 2 or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def open_tabs(live: LiveSchool, people: list[str]):
    """One tab per person, opened at once (so the two workers share them)."""
    with ThreadPoolExecutor(len(people)) as pool:
        return list(pool.map(live.tab, people))


def receive(tab, notification_id: int) -> dict:
    """Read this tab until the announcement arrives (earlier ones may come first)."""
    while (message := tab.expect("notification", timeout=5))["id"] != notification_id:
        assert message["id"] < notification_id
    return message


class Scraper:
    """Scrapes over and over in a thread while a broadcast goes out."""

    def __init__(self, server: LiveServer):
        self.server, self.scrapes, self.errors = server, [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.scrapes.append(scrape(self.server))
            except Exception as exc:  # reported by the test, not lost in the thread
                self.errors.append(exc)

    def __enter__(self) -> Scraper:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=15)


def test_a_scrape_during_a_broadcast_adds_up_every_workers_counts(metered):
    live, server = metered.live, metered.server
    for _attempt in range(6):  # until the tabs sit on both workers
        before = scrape(server)
        tabs = open_tabs(live, PEOPLE)
        wait_for(lambda: scrape(server).value("schoolbell_open_sockets") == len(PEOPLE))
        with Scraper(server) as during:
            sent = live.api.send("Bus is late", "Ten minutes.", priority="urgent", targets=TO_7B)
            for tab in tabs:
                receive(tab, sent["id"])
        per_worker = written_per_worker(server, sent["id"])
        if len(per_worker) == 2:
            break
        for tab in tabs:  # all on one worker: try again with new tabs
            tab.close()
        wait_for(lambda: scrape(server).value("schoolbell_open_sockets") == 0)
    else:
        pytest.fail("every tab landed on one worker, six times")
    assert during.errors == [] and len(during.scrapes) >= 1
    assert sum(per_worker.values()) == len(PEOPLE)

    for tab in tabs:
        tab.ack(sent["id"], "delivered")
    after = wait_for(
        lambda: (
            s
            if (s := scrape(server)).value(
                "schoolbell_deliveries_total", channel="tab", result="delivered"
            )
            - before.value("schoolbell_deliveries_total", channel="tab", result="delivered")
            == len(PEOPLE)
            else None
        )
    )

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    # Sockets of both workers, in every scrape, whichever worker answered it.
    assert {s.value("schoolbell_open_sockets") for s in [*during.scrapes, after]} == {len(PEOPLE)}
    # Who is online, across both workers (their shares meet in Redis within a second).
    wait_for(lambda: scrape(server).value("schoolbell_online_users") == len(PEOPLE))
    assert delta("schoolbell_announcements_sent_total", priority="urgent") == 1
    assert delta("schoolbell_announcements_sent_total", priority="normal") == 0
    # One fan-out per worker holding a recipient's tab, timed once each.
    assert delta("schoolbell_fanout_duration_seconds_count") == 2
    assert 0 < delta("schoolbell_fanout_duration_seconds_sum") < 5
    assert delta("schoolbell_receipts_written_total") == len(PEOPLE)
    assert delta("schoolbell_receipt_flush_duration_seconds_count") >= 1
    assert delta("schoolbell_deliveries_total", channel="tab", result="read") == 0
    # HTTP by route (the rule) and status: each tab asked for a client token first.
    assert (
        delta(
            "schoolbell_http_requests_total",
            route="/api/v1/notifications",
            method="POST",
            status="201",
        )
        == 1
    )
    assert delta(
        "schoolbell_http_requests_total", route="/api/v1/tokens", method="POST", status="201"
    ) == len(PEOPLE)
    assert delta(
        "schoolbell_http_request_duration_seconds_count", route="/api/v1/tokens", method="POST"
    ) == len(PEOPLE)
    # The broker link of every worker is up and was heard from within its probe interval.
    assert after.value("schoolbell_broker_connected") == 1
    assert 0 <= after.value("schoolbell_broker_last_event_age_seconds") < 5
    # The push fan-out is due at once, and nobody runs jobs here.
    assert delta("schoolbell_jobs_waiting", kind="reach-push") == 1


def test_http_requests_are_counted_by_route_never_by_raw_path(metered):
    live, server = metered.live, metered.server
    sent = live.api.send("Trip", targets=TO_7B)
    for _ in range(3):
        assert live.api.call("GET", f"/notifications/{sent['id']}")[0] == 200
    assert live.api.call("GET", "/notifications/999999")[0] == 404
    get(server.url + f"/no/such/page/{sent['id']}")
    scraped = [scrape(server) for _ in range(4)]
    last = scraped[-1]
    routes = last.labels("schoolbell_http_requests_total", "route")
    rules = {rule.rule for rule in metered.app.url_map.iter_rules()}
    assert routes <= rules | {metrics.UNMATCHED}
    rule = "/api/v1/notifications/<id:notification_id>"
    assert last.value("schoolbell_http_requests_total", route=rule, method="GET", status="200") == 3
    assert last.value("schoolbell_http_requests_total", route=rule, method="GET", status="404") == 1
    assert (
        last.value(
            "schoolbell_http_requests_total", route=metrics.UNMATCHED, method="GET", status="404"
        )
        == 1
    )
    assert "/metrics" not in routes  # scraping does not count itself
    # /ws is no HTTP request here (its upgrade would last as long as the socket).
    live.tab("s7b_1")
    assert "/ws" not in scrape(server).labels("schoolbell_http_requests_total", "route")


def test_a_closed_tab_and_a_replay_are_counted(metered):
    live, server = metered.live, metered.server
    tabs = open_tabs(live, PEOPLE)
    sent = live.api.send("Assembly", targets=TO_7B)
    for tab in tabs:
        receive(tab, sent["id"])
    before = wait_for(
        lambda: s if (s := scrape(server)).value("schoolbell_open_sockets") == len(PEOPLE) else None
    )

    # A tab closed by its person: one socket fewer, counted as the client's doing.
    tabs[0].close()
    after = wait_for(
        lambda: (
            s if (s := scrape(server)).value("schoolbell_open_sockets") == len(PEOPLE) - 1 else None
        )
    )
    ended = {
        reason: after.value("schoolbell_disconnects_total", reason=reason)
        - before.value("schoolbell_disconnects_total", reason=reason)
        for reason in after.labels("schoolbell_disconnects_total", "reason")
    }
    assert ended == {**dict.fromkeys(ended, 0), "client_closed": 1}

    # Someone who had no tab open gets the two pending announcements by replay.
    live.api.send("Lunch", targets=TO_7B)
    late = live.tab("s7b_3")
    assert len(late.notifications(2)) == 2
    assert late.nothing_within(0.5)
    wait_for(
        lambda: (
            scrape(server).value("schoolbell_replayed_messages_total")
            - before.value("schoolbell_replayed_messages_total")
            == 2
        )
    )


def test_a_killed_workers_sockets_leave_the_gauge_and_its_counts_stay(metered):
    live, server = metered.live, metered.server
    for _attempt in range(6):
        tabs = open_tabs(live, PEOPLE)
        sent = live.api.send("Assembly", targets=TO_7B)
        for tab in tabs:
            receive(tab, sent["id"])
        per_worker = written_per_worker(server, sent["id"])
        if len(per_worker) == 2:
            break
        for tab in tabs:
            tab.close()
        wait_for(lambda: scrape(server).value("schoolbell_open_sockets") == 0)
    else:
        pytest.fail("every tab landed on one worker, six times")
    for n in range(4):  # sends through either worker
        live.api.send(f"More {n}", targets=TO_7B)
    before = wait_for(
        lambda: s if (s := scrape(server)).value("schoolbell_open_sockets") == len(PEOPLE) else None
    )
    victim, its_sockets = next(iter(per_worker.items()))
    os.kill(int(victim), signal.SIGKILL)
    # The master marks it dead: its sockets no longer count (gunicorn starts another).
    after = wait_for(
        lambda: (
            s
            if (s := scrape(server)).value("schoolbell_open_sockets") == len(PEOPLE) - its_sockets
            else None
        ),
        timeout=15,
    )
    # What it counted stays counted: totals never go backwards.
    for name, labels in [
        ("schoolbell_announcements_sent_total", {"priority": "normal"}),
        ("schoolbell_fanout_duration_seconds_count", {}),
        (
            "schoolbell_http_requests_total",
            {"route": "/api/v1/notifications", "method": "POST", "status": "201"},
        ),
    ]:
        assert after.value(name, **labels) >= before.value(name, **labels) > 0, name


def test_the_metrics_directory_is_fresh_for_each_start_and_removed_after(metered):
    live, server = metered.live, metered.server
    [directory] = re.findall(r"Prometheus metrics of every worker are kept in (\S+)", server.log())
    assert Path(directory).is_dir() and glob.glob(os.path.join(directory, "*.db"))
    live.api.send("Hello", targets=TO_7B)
    server.stop()
    assert not Path(directory).exists()


def test_the_token_is_required_on_the_real_server(metered):
    server = metered.server
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        status, answer, body = get(server.url + "/metrics", headers)
        assert status == 401
        assert answer["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert '"code":"metrics_token_required"' in body.replace(" ", "")
        assert "schoolbell_" not in body


# Who may scrape (the app in-process) -----------------------------------------------------


@pytest.fixture
def app_with(database_url, tmp_path):
    """app_with(**config) -> a test app with those settings."""
    apps = []

    def make(**overrides):
        app = make_test_app(database_url, tmp_path, **overrides)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["schoolbell.db"].kw["bind"].dispose()


def scrape_as(app, address: str = "127.0.0.1", **headers: str):
    return app.test_client().get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": address})


def test_metrics_are_off_until_a_token_or_an_allowlist_is_set(app_with):
    response = scrape_as(app_with(), Authorization="Bearer anything")
    assert response.status_code == 404
    assert "schoolbell_" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer"],
)
def test_a_missing_or_wrong_token_is_refused_with_401(app_with, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = scrape_as(app_with(METRICS_TOKEN=TOKEN), **headers)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "metrics_token_required"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'


def test_the_right_token_reads_the_metrics(app_with):
    response = scrape_as(app_with(METRICS_TOKEN=TOKEN), Authorization=f"bearer {TOKEN}")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    names = {family.name for family in text_string_to_metric_families(response.get_data(True))}
    assert {
        "schoolbell_open_sockets",
        "schoolbell_online_users",
        "schoolbell_jobs_waiting",
    } <= names
    # OpenMetrics for a scraper that asks for it.
    openmetrics = (
        app_with(METRICS_TOKEN=TOKEN)
        .test_client()
        .get(
            "/metrics",
            headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/openmetrics-text"},
        )
    )
    assert openmetrics.content_type.startswith("application/openmetrics-text")
    assert openmetrics.get_data(as_text=True).endswith("# EOF\n")


@pytest.mark.parametrize(
    ("address", "status"),
    [
        ("10.1.2.3", 200),
        ("192.168.7.20", 200),
        ("192.168.7.21", 403),
        ("::1", 200),
        ("::ffff:10.0.0.9", 200),  # an IPv4 client on a dual-stack socket
        ("2001:db8::1", 403),
        ("172.16.0.1", 403),
    ],
)
def test_the_allowlist_admits_listed_addresses_and_networks_only(app_with, address, status):
    app = app_with(METRICS_ALLOW="10.0.0.0/8, 192.168.7.20 ,::1")
    response = scrape_as(app, address)
    assert response.status_code == status
    if status == 403:
        assert response.json["error"]["code"] == "metrics_address_forbidden"


def test_with_both_set_a_scraper_needs_both(app_with):
    app = app_with(METRICS_TOKEN=TOKEN, METRICS_ALLOW="10.0.0.0/8")
    assert scrape_as(app, "10.0.0.1").status_code == 401
    assert scrape_as(app, "10.0.0.1", Authorization=f"Bearer {TOKEN}").status_code == 200
    refused = scrape_as(app, "8.8.8.8", Authorization=f"Bearer {TOKEN}")
    assert refused.status_code == 403


def test_behind_a_proxy_the_allowlist_checks_the_forwarded_address(app_with):
    app = app_with(METRICS_ALLOW="10.0.0.0/8", PROXY_COUNT=1)
    assert scrape_as(app, "127.0.0.1", **{"X-Forwarded-For": "10.2.0.1"}).status_code == 200
    assert scrape_as(app, "10.0.0.1", **{"X-Forwarded-For": "8.8.8.8"}).status_code == 403


@pytest.mark.parametrize("allow", ["10.0.0.0/33", "school.example", "10.0.0.1,,nope"])
def test_an_allowlist_that_does_not_parse_stops_the_start(tmp_path, allow):
    settings = {**config.from_environment({}), **TEST_SECRETS, "METRICS_ALLOW": allow}
    with pytest.raises(config.ConfigError, match="SCHOOLBELL_METRICS_ALLOW"):
        config.finalise(settings, tmp_path)


def test_production_refuses_a_weak_metrics_token(tmp_path):
    settings = {
        **config.from_environment({}),
        "ENV": "production",
        "SECRET_KEY": "s" * 48,
        "JWT_SECRET": "j" * 48,
        "METRICS_TOKEN": "short",
    }
    with pytest.raises(config.ConfigError, match="SCHOOLBELL_METRICS_TOKEN is too weak"):
        config.finalise(settings, tmp_path)


# HTTP requests, in-process ----------------------------------------------------------------


def test_every_request_flask_answers_is_counted_even_one_refused_before_its_view(app_with):
    app = app_with(METRICS_TOKEN=TOKEN)
    client = app.test_client()

    def count(route: str, method: str, status: str) -> float:
        return (
            metrics.REGISTRY.get_sample_value(
                "schoolbell_http_requests_total",
                {"route": route, "method": method, "status": status},
            )
            or 0.0
        )

    before = count("/signin", "POST", "400"), count("/healthz", "GET", "200")
    client.post("/signin", data={"email": "x@school.test", "password": "x"})  # no CSRF token
    client.get("/healthz")
    client.open("/healthz", method="BREW")  # an unknown method is "other", not a new label
    assert (count("/signin", "POST", "400"), count("/healthz", "GET", "200")) == (
        before[0] + 1,
        before[1] + 1,
    )
    assert count(metrics.UNMATCHED, "other", "405") >= 1

    # A WebSocket upgrade Flask answers (Werkzeug: no socket route here, 400) counts,
    # but never as a duration: a socket's upgrade lasts as long as the socket.
    def durations() -> float:
        return (
            metrics.REGISTRY.get_sample_value(
                "schoolbell_http_request_duration_seconds_count",
                {"route": metrics.UNMATCHED, "method": "GET"},
            )
            or 0.0
        )

    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade"}
    refused, timed = count(metrics.UNMATCHED, "GET", "400"), durations()
    assert client.get("/healthz", headers=upgrade).status_code == 400
    assert count(metrics.UNMATCHED, "GET", "400") == refused + 1
    assert durations() == timed


# Pushes and e-mails by result -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "result"),
    [
        (None, "sent"),
        (jobs.RetryLater("429"), "retry"),
        (jobs.GiveUp("410"), "failed"),
        (jobs.Cancel("read already"), "cancelled"),
        (jobs.Defer("quiet hours", datetime(2030, 1, 1, tzinfo=UTC)), "deferred"),
        (RuntimeError("a bug"), "retry"),
    ],
)
def test_each_way_a_push_job_ends_is_counted_once_by_its_result(app, monkeypatch, raised, result):
    kind = "test-push"

    def handler(app, job):
        if raised is not None:
            raise raised

    monkeypatch.setitem(jobs.HANDLERS, kind, handler)
    monkeypatch.setitem(metrics.JOB_COUNTERS, kind, metrics.PUSHES)
    before = {r: metrics.PUSHES.labels(r)._value.get() for r in metrics.JOB_RESULTS}
    with app.app_context(), session_scope(app) as session:
        jobs.enqueue(session, kind, f"{kind}:{result}")
        session.commit()
        [job] = jobs.claim(session, limit=1, lease_s=60)
    jobs.run(app, job)
    after = {r: metrics.PUSHES.labels(r)._value.get() for r in metrics.JOB_RESULTS}
    assert {r: after[r] - before[r] for r in after} == {**dict.fromkeys(after, 0), result: 1}


def test_a_job_out_of_attempts_counts_as_failed(app, monkeypatch):
    def handler(app, job):
        raise jobs.RetryLater("still 503")

    monkeypatch.setitem(jobs.HANDLERS, "test-email", handler)
    monkeypatch.setitem(metrics.JOB_COUNTERS, "test-email", metrics.EMAILS)
    monkeypatch.setitem(app.config, "JOB_MAX_ATTEMPTS", 1)
    failed = metrics.EMAILS.labels("failed")._value.get()
    with app.app_context(), session_scope(app) as session:
        jobs.enqueue(session, "test-email", "test-email:1")
        session.commit()
        [job] = jobs.claim(session, limit=1, lease_s=60)
    jobs.run(app, job)
    assert metrics.EMAILS.labels("failed")._value.get() == failed + 1


def test_pushes_and_emails_count_their_own_job_kinds(app):
    from webapp.services import mail, reach

    assert {k for k, c in metrics.JOB_COUNTERS.items() if c is metrics.PUSHES} >= {
        reach.PUSH,
        *reach.CHANGE_PUSHES,
    }
    assert metrics.JOB_COUNTERS[reach.EMAIL] is metrics.EMAILS
    assert metrics.JOB_COUNTERS[mail.EMAIL_REMIND] is metrics.EMAILS
    assert reach.PUSH_FANOUT not in metrics.JOB_COUNTERS  # a fan-out is no push


def test_jobs_waiting_counts_due_jobs_no_runner_holds(app):
    from webapp.db import utcnow

    with app.app_context(), session_scope(app) as session:
        jobs.enqueue(session, "push", "push:due")
        jobs.enqueue(session, "push", "push:later", due_at=utcnow() + timedelta(hours=1))
        jobs.enqueue(session, "email", "email:due")
        jobs.enqueue(session, "email", "email:claimed")
        session.commit()
        jobs.claim(session, limit=1, lease_s=60, now=utcnow())  # the oldest: push:due
        assert jobs.waiting_by_kind(session) == {"email": 2}


# Pure pieces ------------------------------------------------------------------------------


def test_the_allowlist_parses_addresses_and_networks():
    nets = metrics.parse_allowlist(" 10.0.0.0/8,192.168.1.5 , ::1 ,")
    assert [str(n) for n in nets] == ["10.0.0.0/8", "192.168.1.5/32", "::1/128"]
    assert metrics.address_allowed("192.168.1.5", nets)
    assert not metrics.address_allowed("192.168.1.6", nets)
    assert not metrics.address_allowed("unknown", nets)
    assert metrics.parse_allowlist("") == ()


def test_the_broker_age_is_of_the_worker_heard_from_longest_ago():
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(metrics.LAST_EVENT_STAMP, "x", labels=("pid",))
    family.add_metric(["1"], 1000.0)
    family.add_metric(["2"], 1003.0)
    stamp, age = metrics.last_event_age(family, now=1010.0)
    assert stamp is family and age.name == metrics.LAST_EVENT_AGE
    assert [s.value for s in age.samples] == [10.0]
    never = GaugeMetricFamily(metrics.LAST_EVENT_STAMP, "x", value=0)  # no Redis link
    assert list(metrics.last_event_age(never, now=1010.0)) == []


def test_a_dead_workers_live_gauges_go_and_its_counters_stay(tmp_path, monkeypatch):
    """gunicorn_conf's copy of prometheus-client's mark_process_dead (which the master
    must not import) does what the library's does."""
    assert set(gunicorn_conf.LIVE_GAUGE_MODES) == set(multiprocess._LIVE_GAUGE_MULTIPROCESS_MODES)
    names = [
        "gauge_livesum_41.db",
        "gauge_livemin_41.db",
        "gauge_livesum_411.db",
        "counter_41.db",
        "histogram_41.db",
        "gauge_all_41.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gunicorn_conf.mark_process_dead(41)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(set(names) - {"gauge_livesum_41.db", "gauge_livemin_41.db"})


def test_several_workers_get_a_fresh_metrics_directory_only_with_metrics_on(tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv(gunicorn_conf.METRICS_DIRECTORY_OWNED, raising=False)
    monkeypatch.delenv("SCHOOLBELL_METRICS_TOKEN", raising=False)
    monkeypatch.delenv("SCHOOLBELL_METRICS_ALLOW", raising=False)
    assert gunicorn_conf.metrics_directory(4) is None  # /metrics off: no files written
    monkeypatch.setenv("SCHOOLBELL_METRICS_ALLOW", "10.0.0.0/8")
    assert gunicorn_conf.metrics_directory(1) is None  # one worker: in memory
    made = gunicorn_conf.metrics_directory(2)
    try:
        assert made and os.environ["PROMETHEUS_MULTIPROC_DIR"] == made
        assert Path(made).is_dir() and not os.listdir(made)
    finally:
        os.rmdir(made)
    # The operator's own directory is made, or emptied of an earlier run's numbers.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "new"))
    assert gunicorn_conf.metrics_directory(2) == str(tmp_path / "new")
    assert (tmp_path / "new").is_dir()
    (tmp_path / "counter_7.db").write_bytes(b"x")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert gunicorn_conf.metrics_directory(2) == str(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["keep.txt", "new"]
