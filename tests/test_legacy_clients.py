"""The old design's clients, as they are, against a real gunicorn + gevent server: a
port of that client (tests/legacy_client.py) connects to /api/websocket/notifications
with ?token=, sends "ping" every interval and shows every message as a popup."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import jwt
import pytest
import websocket

from webapp import tokens
from webapp.db import utcnow

from .conftest import TEST_SECRETS
from .helpers import wait_for
from .legacy_client import PATH, LegacyClient, shown
from .school import LiveSchool, build_school

LEGACY_SECRET = "the-old-backends-secret-" + "o" * 48


@pytest.fixture
def live_school(app, database_url, live_server_factory):
    """The school behind a real server that pings every second and knows the old
    backend's secret."""
    school = build_school(app)
    server = live_server_factory(
        database_url,
        WS_PING_INTERVAL_S="1",
        WS_PONG_TIMEOUT_S="1",
        LEGACY_JWT_SECRET=LEGACY_SECRET,
        PUSH_AFTER_S="3600",
    )
    live = LiveSchool(school, server)
    yield live
    live.close()


@pytest.fixture
def old_clients():
    """Old clients started by a test, stopped after it."""
    clients: list[LegacyClient] = []
    yield clients
    for client in clients:
        client.stop()


def old_client(live: LiveSchool, clients: list, handle: str, token: str | None = None):
    token = token or live.api.client_token(live.school.emails[handle])
    client = LegacyClient(live.server.url, token, ping_interval_s=0.3, reconnect_after_s=0.5)
    clients.append(client.start())
    client.wait_connected()
    return client


def counts(live: LiveSchool, notification_id: int) -> dict:
    status, body = live.api.call("GET", f"/notifications/{notification_id}")
    assert status == 200, body
    return body["counts"]


def to(live: LiveSchool, *handles: str) -> dict:
    return {"users": [live.school.emails[h] for h in handles]}


def legacy_token(sub: str = "s7b_1@school.test", **claims) -> str:
    """A token as the old backend made them: HS256, sub = e-mail, exp."""
    payload = {"sub": sub, "exp": utcnow() + timedelta(minutes=10), **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, LEGACY_SECRET)


def test_popups_show_each_announcement_and_nothing_else(live_school, old_clients):
    tab = live_school.tab("s7b_1")  # a Schoolbell tab of the same person, beside it
    token = live_school.api.client_token(live_school.school.emails["s7b_1"])
    client = old_client(live_school, old_clients, "s7b_1", token)
    first = live_school.api.send(
        "Trip tomorrow",
        'Bring **lunch** &amp; "water".\n\n- a hat\n- <script>alert(1)</script>sun cream',
        targets=to(live_school, "s7b_1"),
    )
    second = live_school.api.send("Café closed", "Sorry &lt;3", targets=to(live_school, "s7b_1"))
    popups = client.wait_popups(2)
    assert shown(popups) == [
        ("Trip tomorrow", 'Bring lunch & "water". a hat sun cream'),
        ("Café closed", "Sorry <3"),
    ]
    message = popups[0].message
    assert message["id"] == first["id"] and message["priority"] == "normal"
    assert "body_html" not in message and message["author"] == "ADMIN"

    # The tab reads one, the author edits it and withdraws the other: the old client
    # has nothing to show for any of that.
    assert [m["id"] for m in tab.notifications(2)] == [first["id"], second["id"]]
    tab.ack(first["id"], "read")
    api = live_school.api
    assert api.call("PATCH", f"/notifications/{first['id']}", {"title": "New"})[0] == 200
    assert api.call("POST", f"/notifications/{second['id']}/retract")[0] == 200
    tab.expect("retract")

    time.sleep(3.5)  # several of its pings, and the server's
    assert client.pings_sent >= 8
    assert len(client.popups) == 2, shown(client.popups)
    assert not client.decode_errors
    assert not any(p.empty for p in client.popups)
    assert client.connects == 1 and client.closes == []  # the server's pings kept it
    assert token not in live_school.server.log()  # ?token= never reaches a log


def test_what_it_shows_is_recorded_as_delivered(live_school, old_clients):
    client = old_client(live_school, old_clients, "s7b_1")
    sent = live_school.api.send("Sports day", targets=to(live_school, "s7b_1", "s7b_2"))
    client.wait_popups(1)
    assert wait_for(lambda: counts(live_school, sent["id"])["delivered"] == 1)
    assert counts(live_school, sent["id"])["pending"] == 1  # s7b_2 has no client open


def test_announcements_sent_while_away_arrive_on_reconnect(live_school, old_clients):
    client = old_client(live_school, old_clients, "g7b_1")
    before = live_school.api.send("Before", "One", targets=to(live_school, "g7b_1"))
    client.wait_popups(1)
    wait_for(lambda: counts(live_school, before["id"])["delivered"] == 1)

    client.drop()
    wait_for(lambda: client.closes)
    away = [
        live_school.api.send(f"Away {n}", f"Body {n}", targets=to(live_school, "g7b_1"))
        for n in (1, 2)
    ]
    client.resume()
    client.wait_connected(2)
    popups = client.wait_popups(3)
    time.sleep(1)
    # What it had is not shown again; what it missed arrives, oldest first.
    assert shown(client.popups) == [("Before", "One"), ("Away 1", "Body 1"), ("Away 2", "Body 2")]
    assert [p.message["id"] for p in popups[1:]] == [a["id"] for a in away]
    for sent in away:
        assert wait_for(lambda sent=sent: counts(live_school, sent["id"])["delivered"] == 1)


def test_a_token_of_the_old_backend_works(live_school, old_clients):
    client = old_client(live_school, old_clients, "s7b_1", legacy_token("S7B_1@school.test"))
    live_school.api.send("Old token", "Still works", targets=to(live_school, "s7b_1"))
    assert shown(client.wait_popups(1)) == [("Old token", "Still works")]


def close_of(live: LiveSchool, query: str) -> tuple[int | None, str]:
    """Connect to the legacy path and read how the server closes it."""
    url = live.server.url.replace("http://", "ws://") + PATH + query
    ws = websocket.create_connection(url, timeout=5, suppress_origin=True)
    try:
        while True:
            opcode, frame = ws.recv_data_frame(control_frame=True)
            assert opcode != websocket.ABNF.OPCODE_TEXT, f"sent {frame.data!r} before closing"
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                data = frame.data
                return int.from_bytes(data[:2], "big"), data[2:].decode()
    finally:
        ws.shutdown()


def none_token(sub: str = "s7b_1@school.test") -> str:
    exp = int((utcnow() + timedelta(minutes=10)).timestamp())
    return jwt.encode({"sub": sub, "exp": exp}, None, algorithm="none")


BAD_TOKENS = {
    "missing": (lambda: None, "authentication required"),
    "garbage": (lambda: "not-a-jwt", "invalid token"),
    "other key": (
        lambda: jwt.encode({"sub": "s7b_1@school.test", "exp": 2**33}, "x" * 64),
        "invalid token",
    ),
    "expired": (lambda: legacy_token(exp=utcnow() - timedelta(minutes=1)), "token expired"),
    "alg none": (none_token, "invalid token"),
    "wrong alg": (
        lambda: jwt.encode(
            {"sub": "s7b_1@school.test", "exp": 2**33}, LEGACY_SECRET, algorithm="HS512"
        ),
        "invalid token",
    ),
    "no exp": (lambda: legacy_token(exp=None), "token lacks the 'exp' claim"),
    "no sub": (lambda: legacy_token(sub=None), "token lacks the 'sub' claim"),
    "unknown": (lambda: legacy_token(sub="nobody@school.test"), "unknown user"),
    "disabled": (lambda: legacy_token(sub="gone@school.test"), "account disabled"),
    "not yet": (lambda: legacy_token(nbf=utcnow() + timedelta(minutes=5)), "token not yet valid"),
}


def test_bad_tokens_are_refused_with_1008(live_school):
    """Each closes with 1008 and says why (one server for all: each start costs 2 s)."""
    got = {}
    for name, (make_token, _reason) in BAD_TOKENS.items():
        token = make_token()
        got[name] = close_of(live_school, f"?token={token}" if token else "")
    assert got == {name: (1008, reason) for name, (_make, reason) in BAD_TOKENS.items()}


def test_an_expired_token_of_ours_says_so(live_school):
    own = jwt.encode(
        {
            "sub": str(live_school.school.ids["s7b_1"]),
            "iat": utcnow() - timedelta(hours=2),
            "exp": utcnow() - timedelta(hours=1),
            "iss": "schoolbell",
            "aud": "schoolbell-client",
        },
        TEST_SECRETS["JWT_SECRET"],
    )
    assert close_of(live_school, f"?token={own}") == (1008, "token expired")


# The old backend's tokens, verified (no server needed) ------------------------------
def test_old_tokens_are_refused_without_the_secret_configured(app):
    from webapp.realtime.admission import legacy_user_from_token

    with app.app_context(), pytest.raises(tokens.InvalidToken, match="invalid token"):
        legacy_user_from_token(legacy_token())


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({}, None),
        ({"aud": "old-app"}, None),
        ({"aud": "other"}, "wrong token audience"),
        ({"aud": None}, "token lacks the 'aud' claim"),
        ({"iss": "elsewhere"}, "wrong token issuer"),
        ({"iss": None}, "token lacks the 'iss' claim"),
    ],
)
def test_configured_audience_and_issuer_are_required(claims, error):
    token = legacy_token(**{"aud": "old-app", "iss": "old-backend", **claims})
    verify = lambda: tokens.verify_legacy_token(  # noqa: E731
        token, secret=LEGACY_SECRET, issuer="old-backend", audience="old-app"
    )
    if error is None:
        assert verify() == "s7b_1@school.test"
    else:
        with pytest.raises(tokens.InvalidToken, match=error):
            verify()


def test_without_configured_audience_any_audience_is_taken():
    token = legacy_token(aud="whatever")
    assert tokens.verify_legacy_token(token, secret=LEGACY_SECRET) == "s7b_1@school.test"


# The hub's side (no server): one broadcast, both wire forms, each encoded once -------
def test_a_broadcast_encodes_the_legacy_frame_once_and_only_when_needed(monkeypatch):
    import gevent.socket

    from webapp.realtime import protocol
    from webapp.realtime.hub import Connection, Hub
    from webapp.realtime.legacy import LegacyConnection

    from .test_hub import FakeWs, Peer, note

    encoded = []
    legacy_form = protocol.legacy_notification
    monkeypatch.setattr(
        protocol, "legacy_notification", lambda m: encoded.append(m["id"]) or legacy_form(m)
    )
    hub, sent, pairs = Hub(ping_interval_s=0), [], []

    def connect(user_id: int, legacy: bool = False) -> Peer:
        server, client = gevent.socket.socketpair()
        pairs.extend((server, client))
        if legacy:
            conn = LegacyConnection(hub, FakeWs(server), user_id, lambda *ids: sent.append(ids))
        else:
            conn = Connection(hub, FakeWs(server), user_id)
        hub.register(conn)
        return Peer(client)

    try:
        tab = connect(1)
        hub.deliver([1], 5, note(5, "Bring &amp; <b>go</b>"))
        assert encoded == []  # no legacy socket: nothing legacy is encoded
        old, other_old = connect(1, legacy=True), connect(2, legacy=True)
        hub.deliver([1, 2], 6, note(6, "Bring &amp; <b>go</b>"))
        assert encoded == [6]  # once for both legacy sockets
        assert json.loads(tab.frame()[1])["id"] == 5
        assert json.loads(tab.frame()[1])["body_html"] == "<p>Bring &amp; <b>go</b></p>"
        for peer in (old, other_old):
            message = json.loads(peer.frame()[1])
            assert (message["id"], message["body"]) == (6, "Bring & go")
            assert "body_html" not in message
        assert sorted(sent) == [(1, 6), (2, 6)]  # each recorded as delivered
        # What follows an announcement goes to the tab only.
        hub.send_to_users([1, 2], protocol.retract(6))
        hub.deliver([1], 7, note(7))
        assert json.loads(tab.frame()[1])["type"] == "retract"
        assert json.loads(old.frame()[1])["id"] == 7  # the retract never came
    finally:
        for sock in pairs:
            sock.close()


def test_production_refuses_a_weak_old_backend_secret(tmp_path):
    """One token is enough to guess a short HS256 secret offline."""
    from webapp import config

    settings = {
        **config.from_environment({"SCHOOLBELL_LEGACY_JWT_SECRET": "secret"}),
        "ENV": "production",
        "SECRET_KEY": "k" * 48,
        "JWT_SECRET": "j" * 48,
    }
    with pytest.raises(config.ConfigError, match="SCHOOLBELL_LEGACY_JWT_SECRET is too weak"):
        config.finalise(settings, tmp_path)
