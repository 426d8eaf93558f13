"""Throttling across processes: failed sign-ins and failed /ws handshakes are counted in
Redis, by every process together; and when that Redis is killed, hangs or goes silent
behind a half-open link, people still sign in and sockets still connect (each process
counts on its own meanwhile, and says so in its log). Real gunicorn servers, a real
redis-server of the test's own, PostgreSQL for the two-process test."""

from __future__ import annotations

import time

import pytest
import redis

from webapp.db import get_session
from webapp.services import users as users_service

from .conftest import PASSWORD, make_test_app
from .helpers import csrf_token_from
from .tcp_proxy import TcpProxy
from .test_admission import raw_handshake, refused_status
from .test_server import Browserish
from .wsclient import WSClient

EMAIL = "t@school.test"
LIMITS = {
    "SIGNIN_LIMIT_PER_ACCOUNT": "3 per 5 minutes",
    "WS_FAILED_AUTH_PER_ADDRESS": "2 per minute",
}
FELL_BACK = "Rate limit storage unreachable - falling back to in-memory storage"  # Flask-Limiter's


def add_teacher(database_url: str, tmp_path) -> None:
    """The one account these tests sign in as, straight into the database."""
    app = make_test_app(database_url, tmp_path / "setup")
    with app.app_context():
        users_service.create(
            get_session(),
            None,
            users_service.UserInput(
                email=EMAIL, name="Tess Teacher", role="teacher", password=PASSWORD
            ),
        )
    app.extensions["schoolbell.db"].kw["bind"].dispose()


def signin(server, password: str = PASSWORD) -> int:
    """Sign in through the real form (CSRF included) as a fresh browser; the status."""
    browser = Browserish(server.url)
    _, _, page = browser.request("/signin")
    form = {"csrf_token": csrf_token_from(page), "email": EMAIL, "password": password}
    return browser.request("/signin", form)[0]


def failed_handshake(server) -> None:
    """A socket that offers a forged token: closed with 1008, one failure for this address."""
    tab = WSClient(server.url, token="forged").connect()
    assert tab.close_status()[0] == 1008
    tab.close()


def limit_keys(redis_url: str) -> list[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        return client.keys("LIMITS*")
    finally:
        client.close()


def test_two_processes_count_failed_signins_and_handshakes_together(
    postgres, tmp_path, redis_server, live_server_factory
):
    database_url = postgres.create()
    add_teacher(database_url, tmp_path)
    servers = [
        live_server_factory(database_url, RATELIMIT_STORAGE_URL=redis_server.url, **LIMITS)
        for _ in range(2)
    ]
    # Three wrong passwords, alternating: 2 on one process, 1 on the other, 3 together.
    for n in range(3):
        assert signin(servers[n % 2], "wrong password") == 401
    assert signin(servers[1]) == 429  # even the right password waits now, on both
    assert signin(servers[0]) == 429
    assert limit_keys(redis_server.url)

    # The same for sockets without credentials: one failure on each, the budget is spent.
    failed_handshake(servers[0])
    failed_handshake(servers[1])
    for server in servers:
        status, _, body = raw_handshake(server.url)
        assert status == 429 and b"too_many_failed_handshakes" in body


def test_with_redis_killed_people_still_sign_in_and_each_process_counts_alone(
    database_url, tmp_path, redis_server, live_server_factory
):
    add_teacher(database_url, tmp_path)
    server = live_server_factory(database_url, RATELIMIT_STORAGE_URL=redis_server.url, **LIMITS)
    assert signin(server, "wrong password") == 401
    assert limit_keys(redis_server.url)  # counted in Redis while it ran
    redis_server.kill()

    assert signin(server) == 302  # not a 500
    assert FELL_BACK in server.log()
    # Still throttled, by this process alone (the failure counted in Redis is forgotten).
    for _ in range(3):
        assert signin(server, "wrong password") == 401
    assert signin(server) == 429
    assert "Traceback" not in server.log()


def hang(how: str, redis_server, proxy: TcpProxy) -> None:
    if how == "paused":
        redis_server.pause()  # the process is there, holds the connection, answers nothing
    else:
        proxy.stall()  # Redis is fine; the link to it went silent without an RST


@pytest.mark.parametrize("how", ["paused", "half-open"])
def test_a_hung_redis_delays_a_signin_by_its_timeout_only(
    how, database_url, tmp_path, redis_server, live_server_factory
):
    add_teacher(database_url, tmp_path)
    with TcpProxy("127.0.0.1", redis_server.port) as proxy:
        server = live_server_factory(database_url, RATELIMIT_STORAGE_URL=proxy.url_for(), **LIMITS)
        assert signin(server, "wrong password") == 401  # a connection to Redis is open now
        hang(how, redis_server, proxy)
        started = time.monotonic()
        assert signin(server) == 302
        assert time.monotonic() - started < 3  # 0.5 s for Redis, the rest is the sign-in
        assert FELL_BACK in server.log()


@pytest.mark.parametrize("how", ["killed", "paused", "half-open"])
def test_without_redis_sockets_still_connect_and_failed_ones_are_counted_here(
    how, database_url, redis_server, live_server_factory
):
    with TcpProxy("127.0.0.1", redis_server.port) as proxy:
        server = live_server_factory(database_url, RATELIMIT_STORAGE_URL=proxy.url_for(), **LIMITS)
        assert refused_status(server.url) is None  # through Redis: a connection is open now
        if how == "killed":
            redis_server.kill()
        else:
            hang(how, redis_server, proxy)
        started = time.monotonic()
        failed_handshake(server)  # refused by its token (1008), not broken by Redis
        failed_handshake(server)
        assert time.monotonic() - started < 3
        status, _, body = raw_handshake(server.url)  # the budget, counted by this process
        assert status == 429 and b"too_many_failed_handshakes" in body
        log = server.log()
        assert "rate-limit storage failed" in log and "ws-failed-auth" in log
        assert log.count("rate-limit storage failed") == 1  # once, not once per handshake
        assert "Traceback" not in log


def test_the_handshake_budget_goes_back_to_redis_when_it_answers_again(
    database_url, tmp_path, redis_server, monkeypatch, caplog
):
    """realtime/admission.SharedLimit on its own: local while Redis fails (logged once),
    shared again (logged) once Redis answers."""
    from limits import parse

    from webapp.realtime.admission import SharedLimit

    app = make_test_app(database_url, tmp_path, RATELIMIT_STORAGE_URL=redis_server.url)
    budget = SharedLimit(parse("2 per minute"), "test-scope")
    budget.hit("10.0.0.1")
    assert limit_keys(redis_server.url)
    monkeypatch.setattr(SharedLimit, "RETRY_SHARED_S", 0)  # try Redis on every call
    redis_server.kill()
    for _ in range(3):
        budget.hit("10.0.0.1")  # counted here: no error
    assert not budget.test("10.0.0.1")
    assert [r.getMessage() for r in caplog.records].count(
        "rate-limit storage failed (Error 111 connecting to 127.0.0.1:"
        f"{redis_server.port}. Connection refused.): test-scope is counted by this process "
        "alone until it answers again"
    ) == 1
    redis_server.restart()  # empty
    budget.hit("10.0.0.1")  # shared again
    assert budget.test("10.0.0.1")  # 1 of 2 in Redis
    assert "rate-limit storage answers again: test-scope is shared again" in caplog.text
    assert limit_keys(redis_server.url)
    app.extensions["schoolbell.db"].kw["bind"].dispose()
