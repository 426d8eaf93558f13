"""Password hashing off the event loop: a few native threads, a bounded line with a
deadline, and a clear 503 for whoever is still waiting past it."""

from __future__ import annotations

import concurrent.futures
import http.client
import re
import threading
import urllib.parse

import gevent
import pytest

from webapp import passwords
from webapp.errors import Busy

from .conftest import PASSWORD
from .school import build_school


def test_hashes_and_verifies_on_a_native_thread(app):
    seen: list[int] = []

    def work(password: str) -> str:
        seen.append(threading.get_native_id())
        return passwords._hasher.hash(password)

    with app.app_context():
        pool = app.extensions["schoolbell.passwords"]
        stored = pool.run(work, "a long password")
        assert seen and seen[0] != threading.get_native_id()
        assert passwords.verify(stored, "a long password")
        assert not passwords.verify(stored, "another password")
        assert not passwords.verify("not a hash", "a long password")


def test_other_greenlets_run_while_a_password_is_hashed(app):
    """A hash takes 50-200 ms of CPU: on the event loop nothing else would run meanwhile
    (an alert to thousands of tabs would wait for it)."""
    ticks: list[int] = []
    hashing = True

    def heartbeat() -> None:
        while hashing:
            ticks.append(1)
            gevent.sleep(0.002)

    beat = gevent.spawn(heartbeat)
    gevent.sleep(0)  # the heartbeat has started
    ticks.clear()
    with app.app_context():
        stored = passwords.hash("correct horse battery staple")
    hashing = False
    beat.join()
    assert stored.startswith("$argon2id$")
    assert len(ticks) >= 5, "the event loop was blocked while hashing"


def test_callers_past_the_deadline_get_busy_with_a_retry_after():
    pool = passwords.HashingPool(threads=1, queue_limit=100, wait_s=0.05)
    outcomes = gevent.joinall(
        [gevent.spawn(pool.run, gevent.sleep, 0) for _ in range(1)]
        + [gevent.spawn(pool.run, _slow_hash) for _ in range(4)]
    )
    errors = [g.exception for g in outcomes if g.exception is not None]
    assert errors, "nobody waited past the deadline"
    assert all(isinstance(e, Busy) and e.status == 503 for e in errors)
    assert all(e.code == "signin_busy" and e.retry_after_s >= 1 for e in errors)
    assert sum(g.successful() for g in outcomes) >= 2  # the first in line were served


def test_a_full_line_refuses_at_once_and_batch_work_waits_its_turn():
    pool = passwords.HashingPool(threads=1, queue_limit=1, wait_s=10)
    first, second = gevent.spawn(pool.run, _slow_hash), gevent.spawn(pool.run, _slow_hash)
    gevent.sleep(0.01)  # one hashing, one in line
    with pytest.raises(Busy):
        pool.run(_slow_hash)  # the line is full: no wait at all
    assert pool.run(_slow_hash, wait=False).startswith("$argon2id$")  # an import waits
    gevent.joinall([first, second], raise_error=True)


def test_a_turn_holds_the_thread_for_its_block_and_its_own_hashes():
    """A sign-in takes its turn before reading anything; its hash runs in that turn (one
    thread: no deadlock), and the next caller waits for the whole block."""
    pool = passwords.HashingPool(threads=1, queue_limit=10, wait_s=0.05)
    with pool.turn():
        assert pool.run(_slow_hash).startswith("$argon2id$")  # nested: the same turn
        other = gevent.spawn(pool.run, _slow_hash)
        gevent.sleep(0.2)  # longer than its deadline, while this block holds the turn
        assert isinstance(other.exception, Busy)
    assert pool.run(_slow_hash).startswith("$argon2id$")  # released


def _slow_hash() -> str:
    return passwords._hasher.hash("x" * 12)


def test_hashing_threads_run_only_when_the_loop_lets_them():
    """SCHED_IDLE: on a core shared with the event loop, a hash never takes its turn."""
    import os

    policy = passwords.HashingPool(threads=1, queue_limit=1, wait_s=1).run(
        lambda: os.sched_getscheduler(threading.get_native_id())
    )
    assert policy == os.SCHED_IDLE
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the loop's own thread is untouched


# A sign-in storm against a real server -------------------------------------------------


def _sign_in(base_url: str, email: str) -> tuple[int, dict[str, str], str]:
    """GET the form (cookie + CSRF token), then POST it, as a browser does."""
    host = urllib.parse.urlsplit(base_url).netloc
    conn = http.client.HTTPConnection(host, timeout=60)
    conn.request("GET", "/signin")
    form = conn.getresponse()
    page = form.read().decode()
    cookie = form.headers["Set-Cookie"].split(";", 1)[0]
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"csrf_token": token, "email": email, "password": PASSWORD})
    conn.request(
        "POST",
        "/signin",
        body=body,
        headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
    )
    answer = conn.getresponse()
    text = answer.read().decode()
    conn.close()
    return answer.status, dict(answer.headers), text


def test_a_sign_in_storm_is_answered_every_time_with_a_clear_503_past_the_deadline(
    app, database_url, live_server_factory
):
    """30 people sign in at once; one hashing thread, one second in line at most: those
    served are signed in, the others get the form again with a message and Retry-After,
    and nobody hangs."""
    school = build_school(app)
    server = live_server_factory(
        database_url, PASSWORD_HASH_THREADS="1", PASSWORD_QUEUE_TIMEOUT_S="1"
    )
    with concurrent.futures.ThreadPoolExecutor(30) as executor:
        answers = list(
            executor.map(lambda _: _sign_in(server.url, school.emails["t7b"]), range(30))
        )
    statuses = sorted(status for status, _, _ in answers)
    assert set(statuses) == {302, 503}, statuses
    for status, headers, text in answers:
        if status == 503:
            assert headers["Retry-After"] == "1"
            assert "Many people are signing in right now" in text
            assert 'name="email"' in text and school.emails["t7b"] in text  # kept
