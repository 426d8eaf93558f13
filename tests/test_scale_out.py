"""Many processes: real gunicorn servers on different ports, one PostgreSQL database and
a Redis broker of the test's own (killed, stopped, stalled behind a proxy). An
announcement sent through one process reaches tabs on every process; presence,
receipts and caps hold across them; and nothing is lost while Redis is away."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from .conftest import TEST_SECRETS, make_test_app
from .helpers import deactivate, session_cookie, signed_in, wait_for
from .redis_server import RedisServer
from .school import LiveSchool, build_school
from .server import LiveServer
from .tcp_proxy import TcpProxy
from .wsclient import WSClient

TO_7B = {"classes": [{"name": "7b", "audience": ["students", "guardians", "teachers"]}]}
EVERYONE = {"everyone": True}


class Cluster:
    """Servers on one database and one Redis; `schools[n]` opens tabs on server n."""

    def __init__(self, postgres, tmp_path, redis_server: RedisServer):
        self.url = postgres.create()
        self.app = make_test_app(self.url, tmp_path)
        self.school = build_school(self.app)
        self.tmp_path = tmp_path
        self.redis = redis_server
        self.servers: list[LiveServer] = []
        self.schools: list[LiveSchool] = []

    def start(self, broker_url: str | None = None, **env: str) -> LiveSchool:
        environment = {
            "SCHOOLBELL_DATABASE_URL": self.url,
            "SCHOOLBELL_SECRET_KEY": TEST_SECRETS["SECRET_KEY"],
            "SCHOOLBELL_JWT_SECRET": TEST_SECRETS["JWT_SECRET"],
            "SCHOOLBELL_BROKER_URL": broker_url or self.redis.url,
            "SCHOOLBELL_RATELIMIT_STORAGE_URL": self.redis.url,
            **{f"SCHOOLBELL_{k}": v for k, v in env.items()},
        }
        log = self.tmp_path / f"server-{len(self.servers)}.log"
        server = LiveServer(environment, log).start()
        self.servers.append(server)
        school = LiveSchool(self.school, server)
        self.schools.append(school)
        return school

    def health(self, n: int) -> dict:
        with urllib.request.urlopen(self.servers[n].url + "/healthz", timeout=5) as response:
            return json.loads(response.read())

    def close(self) -> None:
        for school in self.schools:
            school.close()
        for server in self.servers:
            server.stop()
        self.app.extensions["schoolbell.db"].kw["bind"].dispose()


@pytest.fixture
def cluster(postgres, tmp_path, redis_server):
    cluster = Cluster(postgres, tmp_path, redis_server)
    yield cluster
    cluster.close()


def keep_open(tabs: list[WSClient], seconds: float) -> None:
    """Read the tabs for a while, as a browser does: their pings get answered."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for tab in tabs:
            tab.nothing_within(0.2)


def all_notifications(tab: WSClient, ids: set[int], timeout: float) -> Counter:
    """Read until every one of `ids` arrived on this tab (or fail); then a second more,
    so a duplicate would show. Returns how often each id came."""
    got: Counter = Counter(
        m["id"] for m in tab.received if isinstance(m, dict) and m.get("type") == "notification"
    )
    deadline = time.monotonic() + timeout
    while not ids <= set(got):
        left = deadline - time.monotonic()
        assert left > 0, f"missing {sorted(ids - set(got))} after {timeout}s"
        got[tab.expect("notification", timeout=left)["id"]] += 1
    while not tab.nothing_within(1.0):
        got[tab.received[-1]["id"]] += 1
    return got


def all_notifications_on(tabs: list[WSClient], ids: set[int], timeout: float) -> list[Counter]:
    """`all_notifications` on every tab at once: each keeps answering its pings while
    another waits, as open browser tabs do."""
    with ThreadPoolExecutor(len(tabs)) as pool:
        return list(pool.map(lambda tab: all_notifications(tab, ids, timeout), tabs))


# Live delivery across processes ---------------------------------------------------------


def test_an_announcement_sent_through_one_process_shows_live_on_tabs_of_every_process(
    cluster: Cluster,
):
    a, b = cluster.start(), cluster.start()
    tabs = [a.tab("s7b_1"), a.tab("s7b_1"), b.tab("s7b_1"), b.tab("s7b_1"), b.tab("g7b_1")]
    # A stranger's garbage on the channel is refused; nothing else notices.
    redis.Redis.from_url(cluster.redis.url).publish("schoolbell:events", b"x {not an event")

    started = time.monotonic()
    sent = a.api.send("Assembly", "In the hall at 10.", targets=TO_7B)
    for tab in tabs:
        message = tab.expect("notification", timeout=5)
        assert (message["id"], message["title"]) == (sent["id"], "Assembly")
        assert "<p>In the hall at 10.</p>" in message["body_html"]
    took = time.monotonic() - started
    assert took < 5, took  # the bench measures the speed; this only says "live"

    # And the other way round, through the second process.
    sent = b.api.send("Lunch", targets=TO_7B)
    assert {tab.expect("notification")["id"] for tab in tabs} == {sent["id"]}
    assert cluster.health(0)["checks"] == {"database": "ok", "broker": "ok"}
    assert cluster.health(1)["broker"]["kind"] == "redis"
    assert "refused a broker message" in cluster.servers[0].log()


def test_presence_on_one_process_counts_tabs_on_another(cluster: Cluster):
    a, b = cluster.start(), cluster.start()
    admin = signed_in(b.server.url, cluster.school.emails["admin"])
    dashboard = WSClient(
        b.server.url, cookie=session_cookie(admin), origin=b.server.url, query="watch=online"
    ).connect()
    assert 'data-online-count="0"' in dashboard.recv()

    leader = a.tab("s7b_2")
    leader.send_json({"type": "tabs", "count": 3})  # one socket serving three tabs
    a.tab("s7b_2")
    pushed = dashboard.recv(timeout=5)
    while "S7B_2" not in pushed:
        pushed = dashboard.recv(timeout=5)
    assert 'data-online-count="1"' in pushed

    def presence() -> dict:
        status, body = b.api.call("GET", "/presence")
        assert status == 200, body
        return body

    def with_four_tabs() -> dict | None:
        body = presence()
        return body if body["users"] and body["users"][0]["tabs"] == 4 else None

    body = wait_for(with_four_tabs)
    assert body["online"] == 1
    assert [u["email"] for u in body["users"]] == [cluster.school.emails["s7b_2"]]
    assert {"name": "7b", "online": 1, "total": 3} in body["classes"]
    # A student may not look.
    status, _, body = signed_in(b.server.url, cluster.school.emails["s7b_1"]).request(
        "/api/v1/presence"
    )
    assert status == 403 and json.loads(body)["error"]["code"] == "forbidden"

    leader.close()
    wait_for(lambda: presence()["users"][0]["tabs"] == 1, timeout=5)


def test_receipts_and_deactivation_reach_every_process(cluster: Cluster):
    a, b = cluster.start(), cluster.start()
    reader, other_tab = a.tab("s7b_1"), b.tab("s7b_1")
    doomed = [a.tab("s7b_3"), b.tab("s7b_3")]
    sent = a.api.send("Trip", "Sign the form.", targets=TO_7B, require_ack=True)
    staff = signed_in(b.server.url, cluster.school.emails["t7b"])
    status_page = WSClient(
        b.server.url,
        cookie=session_cookie(staff),
        origin=b.server.url,
        query=f"watch=notification:{sent['id']}",
    ).connect()
    first = status_page.recv()
    for tab in (reader, other_tab, *doomed):
        tab.expect("notification")

    reader.ack(sent["id"], "acknowledged")  # on process A ...
    # ... drops the alert in the tab on process B, and shows on B's status page.
    assert other_tab.expect("receipt", timeout=5) == {
        "type": "receipt",
        "id": sent["id"],
        "state": "acknowledged",
    }
    pushed = status_page.recv(timeout=5)
    while '<dd data-state="acknowledged">1</dd>' not in pushed:
        pushed = status_page.recv(timeout=5)
    assert '<dd data-state="acknowledged">0</dd>' in first

    admin = signed_in(a.server.url, cluster.school.emails["admin"])
    assert deactivate(admin, cluster.school.ids["s7b_3"]) == 302
    assert [tab.close_status()[0] for tab in doomed] == [1008, 1008]


def test_the_per_user_socket_cap_holds_across_processes(cluster: Cluster):
    a, b = cluster.start(WS_MAX_PER_USER="3"), cluster.start(WS_MAX_PER_USER="3")
    a.tab("s7a_1"), a.tab("s7a_1"), b.tab("s7a_1")
    token = a.api.client_token(cluster.school.emails["s7a_1"])

    def refused(url: str) -> bool:
        try:
            WSClient(url, protocols=["schoolbell", "schoolbell.jwt." + token]).connect().close()
        except Exception as exc:  # websocket-client's WebSocketBadStatusException
            return getattr(exc, "status_code", None) == 429
        return False

    wait_for(lambda: refused(a.server.url) and refused(b.server.url), timeout=5)


def test_api_limits_count_requests_made_on_either_process(cluster: Cluster):
    a, b = (
        cluster.start(API_RATE_LIMIT="5 per minute"),
        cluster.start(API_RATE_LIMIT="5 per minute"),
    )
    statuses = [(a, b)[n % 2].api.call("GET", "/presence")[0] for n in range(6)]
    assert statuses == [200] * 5 + [429]
    status, body = a.api.call("GET", "/presence")
    assert status == 429 and body["error"]["code"] == "rate_limited"


# Redis away -----------------------------------------------------------------------------


def send_burst(school: LiveSchool, others: LiveSchool, count: int, events: dict) -> list[int]:
    """`count` sends, alternating between two processes; `events` maps a send's index
    to a callable run before it (kill Redis, start it again)."""
    ids = []
    for n in range(count):
        if n in events:
            events[n]()
        through = school if n % 2 == 0 else others
        status, body = through.api.call(
            "POST", "/notifications", {"title": f"Burst {n}", "body": "x", "targets": EVERYONE}
        )
        assert status == 201, (n, status, body)
        ids.append(body["id"])
    return ids


def test_redis_killed_during_a_burst_of_sends_loses_nothing(cluster: Cluster):
    a, b = cluster.start(), cluster.start()
    tabs = [a.tab("s7a_2"), b.tab("s7a_2"), a.tab("t7a"), b.tab("g7a_2")]

    ids = send_burst(a, b, 50, {10: cluster.redis.kill, 30: lambda: cluster.redis.restart()})

    for got in all_notifications_on(tabs, set(ids), timeout=40):
        assert got == Counter(set(ids)), {i: n for i, n in got.items() if n != 1}
    wait_for(lambda: cluster.health(1)["checks"]["broker"] == "ok", timeout=40)


def test_redis_stopped_for_30_seconds_loses_nothing(cluster: Cluster):
    a, b = cluster.start(), cluster.start()
    tabs = [a.tab("s7a_3"), b.tab("s7a_3"), b.tab("s7b_3")]
    cluster.redis.stop()
    wait_for(lambda: cluster.health(1)["status"] == "degraded")
    health = cluster.health(1)
    assert health["checks"] == {"database": "ok", "broker": "down"}
    ids = []
    for n in range(6):
        ids += send_burst(a, b, 2, {})
        if n == 0:
            tabs.append(b.tab("g7b_3"))  # a tab that opens while Redis is away
        if n < 5:
            keep_open(tabs, 5)
    # Tabs on the sending process had theirs live all along; the others wait. Once
    # Redis is back, every process resubscribes within seconds (its retries back off to
    # 5 s at most) and catches up; all tabs are read at once, as browsers answer pings.
    cluster.redis.restart()  # empty: every process writes its share of presence anew
    counts = all_notifications_on(tabs, set(ids), timeout=15)
    assert counts == [Counter(set(ids))] * len(tabs)
    assert cluster.health(1)["status"] == "ok"
    assert "catching up from the database" in cluster.servers[1].log()

    def online_on_a() -> set[str]:
        status, body = a.api.call("GET", "/presence")
        assert status == 200, body
        return {u["email"] for u in body["users"]}

    on_b = {cluster.school.emails["s7b_3"], cluster.school.emails["g7b_3"]}
    wait_for(lambda: on_b <= online_on_a(), timeout=10)


def test_a_half_open_broker_link_is_found_by_the_probe_and_replaced(cluster: Cluster):
    proxy = TcpProxy("127.0.0.1", cluster.redis.port)
    try:
        probe = {"BROKER_PROBE_INTERVAL_S": "2", "BROKER_PROBE_TIMEOUT_S": "1"}
        a = cluster.start(**probe)
        b = cluster.start(proxy.url_for(db=0), **probe)
        tab = b.tab("s7b_2")
        assert cluster.health(1)["broker"]["state"] == "ok"

        proxy.stall()  # B's link goes silent: no error, no FIN, nothing
        wait_for(lambda: cluster.health(1)["broker"]["state"] == "down", timeout=10)
        sent = a.api.send("While B was deaf", targets=TO_7B)
        assert tab.nothing_within(1.0)
        proxy.heal()
        assert tab.expect("notification", timeout=40)["id"] == sent["id"]
        wait_for(lambda: cluster.health(1)["broker"]["state"] == "ok", timeout=10)
        # The probe found it: its publish timed out, or it did not come back.
        assert "Redis broker link lost" in cluster.servers[1].log()
    finally:
        proxy.close()


# A process dies ---------------------------------------------------------------------------


def test_a_process_killed_with_sigkill_loses_nothing_and_its_tabs_leave_presence(
    cluster: Cluster,
):
    a = cluster.start(PRESENCE_TTL_S="6")
    b = cluster.start(PRESENCE_TTL_S="6")
    on_b = b.tab("s7a_1")
    first = a.api.send("Before", targets=EVERYONE)
    last_id = on_b.expect("notification")["id"]
    assert last_id == first["id"]
    on_b.ack(last_id, "delivered")  # as schoolbell.js does

    def online_emails() -> set[str]:
        status, body = a.api.call("GET", "/presence")
        assert status == 200, body
        return {u["email"] for u in body["users"]}

    wait_for(lambda: cluster.school.emails["s7a_1"] in online_emails())
    time.sleep(0.5)  # the receipt is written
    b.server.proc.send_signal(signal.SIGKILL)
    b.server.proc.wait(timeout=10)
    missed = [a.api.send(f"After {n}", targets=EVERYONE)["id"] for n in range(3)]

    # The tab reconnects to the process still up, resumes and gets what it missed.
    again = a.tab("s7a_1", resume=last_id)
    assert [m["id"] for m in again.notifications(3)] == missed
    again.close()
    started = time.monotonic()
    wait_for(lambda: cluster.school.emails["s7a_1"] not in online_emails(), timeout=30)
    assert time.monotonic() - started < 30


def test_a_burst_from_threads_on_both_processes_reaches_every_tab_once(cluster: Cluster):
    a, b = cluster.start(), cluster.start()
    tabs = [a.tab("g7b_2"), b.tab("g7b_2")]
    ids: list[int] = []
    lock = threading.Lock()

    def sender(school: LiveSchool, n: int) -> None:
        for k in range(n):
            sent = school.api.send(f"Thread {k}", targets=TO_7B)
            with lock:
                ids.append(sent["id"])

    threads = [threading.Thread(target=sender, args=(s, 10)) for s in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = all_notifications_on(tabs, set(ids), timeout=10)
    assert counts == [Counter(set(ids))] * len(tabs)


def pid_of(log_line: str) -> str:
    return log_line.split("[")[2].split("]")[0]


def wrote(server: LiveServer, notification_id: int) -> set[str]:
    """The workers that wrote this announcement to a socket of theirs (from the log)."""
    return {
        pid_of(line)
        for line in server.log().splitlines()
        if f"notification {notification_id}: written to" in line and " to 0 sockets" not in line
    }


def spread(server: LiveServer, notification_id: int) -> bool:
    """Whether two workers or more wrote it (their log lines may lag a moment)."""
    deadline = time.monotonic() + 1
    while len(wrote(server, notification_id)) < 2:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_four_workers_on_one_host_work_out_of_the_box_with_redis(
    sqlite_template, tmp_path, redis_server
):
    """SCHOOLBELL_WORKERS=4 and a Redis URL, nothing else (the embedded SQLite): every
    tab of a student, whichever worker took it, shows the announcement live."""
    from .databases import sqlite_copy

    url = sqlite_copy(sqlite_template, tmp_path)
    app = make_test_app(url, tmp_path)
    school = build_school(app)
    server = LiveServer(
        {
            "SCHOOLBELL_DATABASE_URL": url,
            "SCHOOLBELL_SECRET_KEY": TEST_SECRETS["SECRET_KEY"],
            "SCHOOLBELL_JWT_SECRET": TEST_SECRETS["JWT_SECRET"],
            "SCHOOLBELL_WORKERS": "4",
            "SCHOOLBELL_BROKER_URL": redis_server.url,
        },
        tmp_path / "gunicorn.log",
        workers=4,
    ).start()
    try:
        live = LiveSchool(school, server)
        booted = {pid_of(line) for line in server.log().splitlines() if "Booting worker" in line}
        assert len(booted) == 4
        # Open tabs in parallel rounds until they sit on two workers at least (one idle
        # worker may accept every handshake of a quiet moment): each round, every tab
        # opened so far gets the new announcement live, whichever worker holds it.
        tabs: list[WSClient] = []
        for round_ in range(5):
            with ThreadPoolExecutor(8) as pool:
                tabs += pool.map(lambda _: live.tab("s7b_1"), range(8))
            sent = live.api.send(f"Fire drill {round_}", targets=TO_7B)
            for tab in tabs:
                # A tab opened in a later round first gets the earlier rounds' ones by
                # replay (nobody acknowledged them: still pending), then this one live.
                while (got := tab.expect("notification", timeout=5)["id"]) != sent["id"]:
                    assert got < sent["id"], (got, sent["id"])
            if spread(server, sent["id"]):
                break
        assert spread(server, sent["id"]), "every tab landed on one worker"
        live.close()
    finally:
        server.stop()
        app.extensions["schoolbell.db"].kw["bind"].dispose()
