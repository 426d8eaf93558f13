"""The test fixtures for Redis faults (tests/redis_server.py, tests/tcp_proxy.py) do what
other tests rely on: a crash and a restart on the same port, a hung server, and a link
that goes silent without an error."""

from __future__ import annotations

import contextlib
import time

import pytest
import redis

from .tcp_proxy import TcpProxy


@contextlib.contextmanager
def client(url: str, timeout_s: float = 1):
    """A redis-py client that gives up after timeout_s, closed after."""
    connection = redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    try:
        yield connection
    finally:
        connection.close()


def test_a_fresh_server_answers_on_its_own_port_and_keeps_nothing(redis_server):
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.port != 6379
    with client(redis_server.url) as r:
        assert r.ping()
        r.set("kept", "no")
        assert r.config_get("save") == {"save": ""}
        assert r.config_get("appendonly") == {"appendonly": "no"}


def test_kill_drops_connections_and_restart_comes_back_on_the_same_port(redis_server):
    port = redis_server.port
    with client(redis_server.url) as r:
        r.set("before", "1")
        redis_server.kill()
        assert not redis_server.running
        with pytest.raises(redis.ConnectionError):
            r.ping()
        redis_server.restart()
        assert redis_server.port == port
        assert r.ping()  # the same client reconnects
        assert r.get("before") is None  # nothing was persisted


def test_stop_then_restart(redis_server):
    redis_server.stop()
    assert not redis_server.running
    redis_server.restart()
    with client(redis_server.url) as r:
        assert r.ping()


def test_a_paused_server_keeps_connections_open_but_answers_nothing(redis_server):
    with client(redis_server.url) as r:
        assert r.ping()
        redis_server.pause()
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            r.ping()
        assert time.monotonic() - started < 3
        redis_server.resume()
        assert r.ping()


def test_a_paused_server_still_stops(redis_server):
    redis_server.pause()
    redis_server.stop()
    assert not redis_server.running


def test_the_proxy_forwards_both_ways(redis_server):
    with TcpProxy("127.0.0.1", redis_server.port) as proxy:
        assert proxy.url_for(db=3) == f"redis://127.0.0.1:{proxy.port}/3"
        with client(proxy.url_for()) as r:
            assert r.ping()
            r.set("through", "the proxy")
            assert r.get("through") == b"the proxy"


def test_a_stalled_proxy_is_silence_not_an_error(redis_server):
    with TcpProxy("127.0.0.1", redis_server.port) as proxy, client(proxy.url_for()) as r:
        assert r.ping()
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):  # not a ConnectionError: the link is open
            r.ping()
        assert 0.9 < time.monotonic() - started < 3
        # A new connection gets through the handshake and then hears nothing either.
        with client(proxy.url_for()) as late, pytest.raises(redis.TimeoutError):
            late.ping()
        assert redis_server.running  # Redis itself was fine all along


def test_a_healed_proxy_forwards_new_connections(redis_server):
    with TcpProxy("127.0.0.1", redis_server.port) as proxy:
        with client(proxy.url_for()) as r:
            assert r.ping()
            proxy.stall()
            with pytest.raises(redis.TimeoutError):
                r.ping()
            proxy.heal()
        with client(proxy.url_for()) as r:
            assert r.ping()


def test_the_proxy_passes_a_dead_target_on_as_a_closed_connection(redis_server):
    with TcpProxy("127.0.0.1", redis_server.port) as proxy, client(proxy.url_for()) as r:
        assert r.ping()
        redis_server.kill()
        with pytest.raises(redis.ConnectionError):
            r.ping()
        redis_server.restart()
        assert r.ping()


@pytest.mark.parametrize(
    ("ci", "outcome"), [("", pytest.skip.Exception), ("true", pytest.fail.Exception)]
)
def test_a_missing_redis_server_skips_or_fails_under_ci(tmp_path, monkeypatch, ci, outcome):
    from . import redis_server

    monkeypatch.setattr(redis_server, "REDIS_SERVER", str(tmp_path / "no-redis-server"))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="redis-server is not reachable"):
        redis_server.RedisServer(tmp_path / "redis").start()
