"""Limits that fit a school: a thousand people's tabs behind one NAT address are let in
(limited per person), while a flood of sockets without credentials from one address
gets 429. Real server, real sockets, default settings."""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import os
import urllib.parse

import websocket

from webapp.config import Defaults

from .helpers import wait_for
from .school import crowd
from .wsclient import WSClient

TABS = 2500  # a school behind one address: 1,000 people, two or three tabs each
UNAUTHENTICATED_LIMIT = Defaults.WS_MAX_UNAUTHENTICATED_PER_ADDRESS
assert int(Defaults.WS_FAILED_AUTH_PER_ADDRESS.split()[0]) < UNAUTHENTICATED_LIMIT


def refused_status(base_url: str, **options) -> int | None:
    """Open a socket without credentials; None if the handshake succeeded, else the
    HTTP status it was refused with."""
    client = WSClient(base_url, **options)
    try:
        client.connect()
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code
    return None


def raw_handshake(base_url: str) -> tuple[int, dict[str, str], bytes]:
    """A WebSocket upgrade request as a browser sends it, without credentials; the
    status, headers and body of the answer (the connection is closed after)."""
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(base_url).netloc, timeout=10)
    conn.request(
        "GET",
        "/ws",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Version": "13",
        },
    )
    response = conn.getresponse()
    body = response.read() if response.status != 101 else b""
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def test_a_school_behind_one_address_gets_in_while_a_flood_from_it_gets_429(
    app, database_url, live_server_factory
):
    pupils = crowd(app, TABS)
    server = live_server_factory(database_url)

    def open_tab(n: int) -> WSClient:
        pupil = pupils[n]
        # Schoolbell's own pages sign the socket in by cookie; embedded pages by a JWT.
        tab = WSClient(server.url, cookie=pupil.cookie) if n % 2 else None
        tab = tab or WSClient(server.url, token=pupil.token)
        tab.connect(timeout=30)
        assert tab.expect("hello", timeout=30)["user"]["id"] == pupil.id
        return tab

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        tabs = list(pool.map(open_tab, range(TABS)))
    assert len(tabs) == TABS  # every one from 127.0.0.1, under the defaults

    # A flood of sockets that never say who they are: held open up to the limit, the
    # next one refused before the handshake.
    silent = [WSClient(server.url).connect() for _ in range(UNAUTHENTICATED_LIMIT)]
    status, _, body = raw_handshake(server.url)
    assert (status, json.loads(body)["error"]["code"]) == (429, "too_many_unauthenticated")
    assert open_tab(0)  # meanwhile people behind the same address still get in
    # Each of them left without signing in: a failed handshake. The address's budget is
    # spent, so sockets without credentials are refused for a while.
    for tab in silent:
        tab.close()
    wait_for(lambda: raw_handshake(server.url)[0] == 429)
    status, _, body = raw_handshake(server.url)
    assert (status, json.loads(body)["error"]["code"]) == (429, "too_many_failed_handshakes")
    assert open_tab(1) and open_tab(2)  # signed-in tabs from that address: welcome


def test_a_refused_flood_is_told_why_and_when_to_come_back(app, database_url, live_server_factory):
    server = live_server_factory(database_url, WS_FAILED_AUTH_PER_ADDRESS="4 per minute")
    for _ in range(2):
        tab = WSClient(server.url, token="forged").connect()
        assert tab.close_status()[0] == 1008  # a bad ?token counts as a failure
        tab.close()
    for _ in range(2):
        tab = WSClient(server.url).connect()
        tab.send_json({"type": "auth", "token": "forged"})  # so does a bad first message
        assert tab.close_status()[0] == 1008
        tab.close()
    status, headers, body = raw_handshake(server.url)
    assert status == 429
    assert 1 <= int(headers["retry-after"]) <= 61
    assert json.loads(body)["error"]["code"] == "too_many_failed_handshakes"
    assert "failed to sign in" in json.loads(body)["error"]["message"]


def test_a_socket_that_never_authenticates_is_a_failure_too(app, database_url, live_server_factory):
    server = live_server_factory(
        database_url, WS_FAILED_AUTH_PER_ADDRESS="2 per minute", WS_AUTH_TIMEOUT_S="1"
    )
    for _ in range(2):
        assert WSClient(server.url).connect().close_status(timeout=5)[0] == 1008  # silence
    assert refused_status(server.url) == 429
    pupil = crowd(app, 1)[0]
    assert WSClient(server.url, token=pupil.token).connect().hello()  # signed in: welcome


def test_authenticating_frees_the_unauthenticated_slot(app, database_url, live_server_factory):
    server = live_server_factory(database_url, WS_MAX_UNAUTHENTICATED_PER_ADDRESS="2")
    pupils = crowd(app, 3)
    waiting = [WSClient(server.url).connect() for _ in range(2)]
    assert refused_status(server.url) == 429
    for tab, pupil in zip(waiting, pupils, strict=False):
        tab.send_json({"type": "auth", "token": pupil.token})
        assert tab.hello()
    late = WSClient(server.url).connect()  # both slots are free again
    late.send_json({"type": "auth", "token": pupils[2].token})
    assert late.hello()["user"]["id"] == pupils[2].id


def test_a_token_offered_as_a_subprotocol_signs_the_socket_in_before_the_handshake(
    app, database_url, live_server_factory
):
    """As schoolbell.js on an embedding page does: no `auth` message, no token in the URL,
    and so not limited per address (a reconnect storm of a whole school's embedded tabs
    is let in)."""
    server = live_server_factory(database_url, WS_MAX_UNAUTHENTICATED_PER_ADDRESS="1")
    pupils = crowd(app, 5)
    waiting = WSClient(server.url).connect()  # the address's one unauthenticated slot
    assert refused_status(server.url) == 429
    for pupil in pupils:
        tab = WSClient(server.url, protocols=["schoolbell", f"schoolbell.jwt.{pupil.token}"])
        tab.connect()
        assert tab.ws.getsubprotocol() == "schoolbell"  # the token is never echoed
        assert tab.hello()["user"]["id"] == pupil.id
    waiting.close()
    forged = WSClient(server.url, protocols=["schoolbell", "schoolbell.jwt.forged"]).connect()
    assert forged.close_status()[0] == 1008  # a bad token: refused, as by ?token=
