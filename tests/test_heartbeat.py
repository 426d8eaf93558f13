"""The heartbeat keeps time: every open socket is pinged once per interval, whether one
tab is open or hundreds (phones pay for every wake-up), on a real server."""

from __future__ import annotations

import itertools
import selectors
import time

import pytest
import websocket

from .school import crowd
from .wsclient import WSClient

INTERVAL_S = 2


def ping_times(tabs: list[WSClient], seconds: float) -> dict[WSClient, list[float]]:
    """Read every tab for `seconds`; when each got a ping (answered, as browsers do)."""
    pings: dict[WSClient, list[float]] = {tab: [] for tab in tabs}
    selector = selectors.DefaultSelector()
    for tab in tabs:
        tab.ws.settimeout(1)
        selector.register(tab.ws.sock, selectors.EVENT_READ, tab)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(timeout=left):
            tab = key.data
            opcode, _frame = tab.ws.recv_data_frame(control_frame=True)  # pongs by itself
            if opcode == websocket.ABNF.OPCODE_PING:
                pings[tab].append(time.monotonic())
    selector.close()
    return pings


@pytest.mark.parametrize("sockets", [1, 3, 300])
def test_each_socket_is_pinged_once_per_interval(app, database_url, live_server_factory, sockets):
    server = live_server_factory(
        database_url, WS_PING_INTERVAL_S=str(INTERVAL_S), WS_PONG_TIMEOUT_S=str(INTERVAL_S)
    )
    tabs = [WSClient(server.url, token=pupil.token).connect() for pupil in crowd(app, sockets)]
    for tab in tabs:
        tab.hello()
    started = time.monotonic()
    # A socket joins the heartbeat's next round: its first ping within two intervals,
    # then one every interval, exactly.
    pings = ping_times(tabs, 4 * INTERVAL_S + 0.5)
    for times in pings.values():
        assert times, "never pinged"
        assert times[0] - started <= 2 * INTERVAL_S + 0.5
        two_intervals = [t for t in times if t < times[0] + 2 * INTERVAL_S - 0.5]
        assert len(two_intervals) == 2, [round(t - started, 2) for t in times]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(0.75 * INTERVAL_S <= gap <= 1.25 * INTERVAL_S for gap in gaps), gaps
    for tab in tabs:  # answering pings, nobody was dropped
        tab.send_json({"type": "ping"})
        assert tab.expect("pong")
