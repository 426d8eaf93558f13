"""Live delivery end to end: a real gunicorn + gevent server, real WebSocket clients.

Every test runs twice: with the in-process broker (the embedded set-up) and with a
Redis broker (the scaled-out one, on a redis-server of the test's own), so what holds
on one process holds with Redis between the hub and the send too."""

from __future__ import annotations

import base64
import http.client
import json
import signal
import socket
import time
import urllib.error
import urllib.request
from datetime import timedelta

import jwt
import pytest
import websocket

from webapp.db import utcnow

from .conftest import PASSWORD, TEST_SECRETS
from .helpers import wait_for
from .school import Api, LiveSchool
from .wsclient import WSClient

TO_7B = {"classes": [{"name": "7b", "audience": ["students", "guardians"]}]}


@pytest.fixture(params=["memory", "redis"])
def live_school(request, app, database_url, live_server_factory):
    """The school behind a real server, with each broker."""
    from .school import build_school

    env = {}
    if request.param == "redis":
        env["BROKER_URL"] = request.getfixturevalue("redis_server").url
    school = build_school(app)
    live = LiveSchool(school, live_server_factory(database_url, **env))
    yield live
    live.close()


def ids(messages: list[dict]) -> list[int]:
    return [m["id"] for m in messages]


def counts(api: Api, notification_id: int) -> dict:
    status, body = api.call("GET", f"/notifications/{notification_id}")
    assert status == 200, body
    return body["counts"]


# Who receives -----------------------------------------------------------------------


def test_only_recipients_receive_on_every_tab(live_school: LiveSchool):
    first, second = live_school.tab("s7b_1"), live_school.tab("s7b_1")
    guardian = live_school.tab("g7b_1")
    outsiders = [live_school.tab(h) for h in ("t7b", "s7a_1", "g7a_1", "admin")]

    sent = live_school.api.send("Trip tomorrow", "Bring **lunch**", targets=TO_7B)
    assert sent["recipient_count"] == 6  # 3 students + 3 guardians of 7b

    for tab in (first, second, guardian):
        message = tab.expect("notification", timeout=2)
        assert message["id"] == sent["id"]
        assert message["title"] == "Trip tomorrow"
        assert message["body_html"] == "<p>Bring <strong>lunch</strong></p>"
        assert message["author"] == "ADMIN"
    assert all(tab.nothing_within(1.0) for tab in outsiders)


def test_someone_reached_twice_gets_it_once(live_school: LiveSchool):
    tab = live_school.tab("s7b_1")
    sent = live_school.api.send(
        targets={
            "users": [live_school.school.emails["s7b_1"]],
            "classes": [{"name": "7b", "audience": ["students"]}],
        }
    )
    assert sent["recipient_count"] == 3
    assert tab.expect("notification")["id"] == sent["id"]
    assert tab.nothing_within(0.5)


def test_deactivated_users_are_not_recipients(live_school: LiveSchool):
    sent = live_school.api.send(targets={"roles": ["student"]})
    assert sent["recipient_count"] == 6  # "gone" is a deactivated student


# Nothing is lost ----------------------------------------------------------------------


def test_a_closed_tab_gets_it_when_opened(live_school: LiveSchool):
    sent = live_school.api.send("While you were away", targets=TO_7B)
    tab = live_school.tab("g7b_2")
    assert tab.expect("notification")["id"] == sent["id"]


def test_dropped_connection_resumes_without_gap_or_duplicate(live_school: LiveSchool):
    api = live_school.api
    tab = live_school.tab("s7b_1", resume=0)
    first = [api.send(f"First {n}", targets=TO_7B)["id"] for n in range(3)]
    assert ids(tab.notifications(3)) == first
    for notification_id in first:
        tab.ack(notification_id, "delivered")
    wait_for(lambda: counts(api, first[-1])["delivered"] == 1)
    tab.ws.sock.shutdown(socket.SHUT_RDWR)  # the network drops; no close handshake

    later = [api.send(f"Later {n}", targets=TO_7B)["id"] for n in range(3)]
    again = live_school.tab("s7b_1", resume=first[-1])
    assert ids(again.notifications(3)) == later  # in order, nothing old repeated
    assert again.nothing_within(0.5)


def test_reconnecting_during_a_stream_leaves_no_gap(live_school: LiveSchool):
    api = live_school.api
    tab = live_school.tab("s7b_1", resume=0)
    sent = [api.send(f"Stream {n}", targets=TO_7B)["id"] for n in range(4)]
    got = ids(tab.notifications(2))
    tab.ws.sock.shutdown(socket.SHUT_RDWR)
    sent += [api.send(f"Stream {n}", targets=TO_7B)["id"] for n in range(4, 8)]
    again = live_school.tab("s7b_1", resume=got[-1])
    # Nothing was acknowledged as delivered, so the first two come again (still pending);
    # the client drops them by id. What is shown: everything, once, in order.
    replayed = ids(again.notifications(8))
    assert replayed == sent
    shown = list(dict.fromkeys(got + replayed))
    assert shown == sent
    assert again.nothing_within(0.5)


def test_nothing_acknowledged_as_sent_is_lost_on_sigkill(
    live_school: LiveSchool, database_url, live_server_factory
):
    sent = live_school.api.send("Survives a crash", targets=TO_7B)
    live_school.server.stop(signal.SIGKILL)
    restarted = LiveSchool(live_school.school, live_server_factory(database_url))
    try:
        assert restarted.tab("s7b_3").expect("notification")["id"] == sent["id"]
    finally:
        restarted.close()


def test_the_same_idempotency_key_sends_once(live_school: LiveSchool):
    tab = live_school.tab("s7b_1")
    first = live_school.api.send("Once", targets=TO_7B, key="retry-42")
    second = live_school.api.send("Once", targets=TO_7B, key="retry-42")
    assert first == second
    assert tab.expect("notification")["id"] == first["id"]
    assert tab.nothing_within(0.5)
    status, body = live_school.api.call(
        "POST",
        "/notifications",
        {"title": "Different", "body": "x", "targets": TO_7B},
        {"Idempotency-Key": "retry-42"},
    )
    assert status == 409 and body["error"]["code"] == "idempotency_key_reused"


def test_a_send_from_the_compose_page_reaches_the_tabs_once_with_its_author(
    live_school: LiveSchool,
):
    """The dashboard publishes after commit like the API: the sender's name as author,
    and a double submit (the same page's key) publishes nothing the second time."""
    from .helpers import csrf_token_from
    from .test_server import Browserish

    tab = live_school.tab("s7b_1")
    teacher = Browserish(live_school.server.url)
    _, _, page = teacher.request("/signin")
    teacher.request(
        "/signin",
        {
            "csrf_token": csrf_token_from(page),
            "email": live_school.school.emails["t7b"],
            "password": PASSWORD,
        },
    )
    _, _, page = teacher.request("/notifications/new")
    form = {
        "csrf_token": csrf_token_from(page),
        "title": "From the dashboard",
        "body": "Hello 7b",
        "class:7b": "students",
        "key": "compose-page-1",
    }
    first_status, first_headers, _ = teacher.request("/notifications", form)
    again_status, again_headers, _ = teacher.request("/notifications", form)
    assert first_status == again_status == 302
    assert first_headers["Location"] == again_headers["Location"]
    message = tab.expect("notification")
    assert (message["title"], message["author"]) == ("From the dashboard", "T7B")
    assert first_headers["Location"].endswith(f"/notifications/{message['id']}")
    assert tab.nothing_within(0.5)


# One bad client never slows the rest ------------------------------------------------------


def stalled_socket(base_url: str, token: str) -> socket.socket:
    """A client that completes the handshake and then never reads again."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(b"0123456789abcdef").decode()
    sock.sendall(
        (
            f"GET /ws?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert b" 101 " in sock.recv(1024)
    return sock


def test_a_stalled_reader_delays_nobody_and_is_cut_off(live_school: LiveSchool):
    api = live_school.api
    readers = [live_school.tab(h) for h in ("s7b_1", "s7b_2", "g7b_1", "g7b_2") for _ in "ab"]
    stalled = stalled_socket(
        live_school.server.url, api.client_token(live_school.school.emails["s7b_3"])
    )
    body = "Long announcement. " * 1000  # ~19 KB per frame
    total = 0
    for n in range(40):
        started = time.monotonic()
        sent = api.send(f"Big {n}", body, targets=TO_7B)
        for tab in readers:
            assert tab.expect("notification", timeout=1.0)["id"] == sent["id"]
        assert time.monotonic() - started < 1.0
        total += len(body)
    # The stalled socket was dropped once its buffers filled: reading now finds the end.
    stalled.settimeout(5)
    received = 0
    while True:
        try:
            chunk = stalled.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += len(chunk)
    stalled.close()
    assert received < total / 2, (received, total)
    assert "too slow" in live_school.server.log()


def test_a_peer_that_stops_answering_pings_is_dropped(app, database_url, live_server_factory):
    from .school import build_school

    school = build_school(app)
    server = live_server_factory(database_url, WS_PING_INTERVAL_S="1", WS_PONG_TIMEOUT_S="1")
    live = LiveSchool(school, server)
    try:
        silent = live.tab("s7b_1")  # websocket-client only answers pings while reading
        talker = live.tab("s7b_2")
        talker.ws.settimeout(0.1)
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:  # reading answers each ping with a pong
            with pytest.raises(websocket.WebSocketTimeoutException):
                talker.ws.recv()
        with pytest.raises(
            (websocket.WebSocketConnectionClosedException, ConnectionError, OSError)
        ):
            for _ in range(20):
                silent.ws.recv()
        talker.send_json({"type": "ping"})
        assert talker.expect("pong")["type"] == "pong"
    finally:
        live.close()


# Authentication -------------------------------------------------------------------------


def token_for(sub: str | None = "1", **changes) -> str:
    now = utcnow()
    claims = {
        "sub": sub,
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "iss": "schoolbell",
        "aud": "schoolbell-client",
        **changes,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, changes.pop("secret", TEST_SECRETS["JWT_SECRET"]), algorithm="HS256")


def unsigned(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


BAD_TOKENS = {
    "bad signature": lambda uid: jwt.encode(
        {
            "sub": str(uid),
            "iat": utcnow(),
            "exp": utcnow() + timedelta(minutes=5),
            "iss": "schoolbell",
            "aud": "schoolbell-client",
        },
        "x" * 40,
        algorithm="HS256",
    ),
    "alg none": lambda uid: unsigned(
        {
            "sub": str(uid),
            "iss": "schoolbell",
            "aud": "schoolbell-client",
            "iat": int(time.time()),
            "exp": int(time.time()) + 300,
        }
    ),
    "expired": lambda uid: token_for(
        str(uid), iat=utcnow() - timedelta(hours=2), exp=utcnow() - timedelta(hours=1)
    ),
    "wrong audience": lambda uid: token_for(str(uid), aud="someone-else"),
    "wrong issuer": lambda uid: token_for(str(uid), iss="evil"),
    "no exp": lambda uid: token_for(str(uid), exp=None),
    "unknown user": lambda uid: token_for("999999"),
    "garbage": lambda uid: "not.a.jwt",
}


@pytest.mark.parametrize("how", ["query", "message"])
def test_bad_tokens_are_refused_with_1008(live_school: LiveSchool, how):
    uid = live_school.school.ids["s7b_1"]
    cases = {
        **BAD_TOKENS,
        "deactivated user": lambda _: token_for(str(live_school.school.ids["gone"])),
    }
    for name, make in cases.items():
        token = make(uid)
        if how == "query":
            client = WSClient(live_school.server.url, token=token).connect()
        else:
            client = WSClient(live_school.server.url).connect()
            client.send_json({"type": "auth", "token": token})
        code, reason = client.close_status()
        client.close()
        assert code == 1008, name
        assert reason, name


def test_a_socket_that_never_authenticates_is_closed(app, database_url, live_server_factory):
    server = live_server_factory(database_url, WS_AUTH_TIMEOUT_S="1")
    client = WSClient(server.url).connect()
    started = time.monotonic()
    assert client.close_status() == (1008, "authentication timeout")
    assert time.monotonic() - started < 3


def test_first_message_must_be_auth(live_school: LiveSchool):
    client = WSClient(live_school.server.url).connect()
    client.send_json({"type": "resume", "last_id": 0})
    assert client.close_status()[0] == 1008


def signed_in_cookie(server_url: str, email: str) -> str:
    from .helpers import session_cookie, signed_in

    return session_cookie(signed_in(server_url, email))


def test_session_cookie_works_from_the_same_origin(live_school: LiveSchool):
    url = live_school.server.url
    cookie = signed_in_cookie(url, live_school.school.emails["s7b_1"])
    tab = WSClient(url, cookie=cookie, origin=url).connect()
    assert tab.hello()["user"]["id"] == live_school.school.ids["s7b_1"]


def test_cross_site_websocket_hijacking_is_refused_before_the_handshake(live_school: LiveSchool):
    url = live_school.server.url
    cookie = signed_in_cookie(url, live_school.school.emails["s7b_1"])
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        WSClient(url, cookie=cookie, origin="https://evil.example").connect()
    assert refused.value.status_code == 403


def test_a_plain_http_request_to_the_socket_address_gets_a_clear_400(live_school: LiveSchool):
    request = urllib.request.Request(
        live_school.server.url + "/ws?token=secret", headers={"Accept": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"]["code"] == "websocket_required"
    assert refused.value.headers["X-Content-Type-Options"] == "nosniff"  # as every page
    assert "secret" not in live_school.server.log()


def test_a_malformed_handshake_gets_a_clear_400(live_school: LiveSchool):
    host, port = live_school.server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.request(
        "GET",
        "/ws",
        headers={"Upgrade": "websocket", "Connection": "Upgrade", "Accept": "application/json"},
    )  # no Sec-WebSocket-Key, no version
    response = connection.getresponse()
    assert response.status == 400
    assert response.getheader("Content-Security-Policy")
    assert json.loads(response.read())["error"]["code"] == "bad_handshake"
    connection.close()


def test_allowed_origins_may_embed_the_client(app, database_url, live_server_factory):
    from .school import build_school

    school = build_school(app)
    server = live_server_factory(database_url, ALLOWED_ORIGINS="https://portal.school.test")
    live = LiveSchool(school, server)
    token = live.api.client_token(school.emails["s7b_1"])
    tab = WSClient(server.url, origin="https://portal.school.test").connect()
    tab.send_json({"type": "auth", "token": token})
    assert tab.hello()["user"]["id"] == school.ids["s7b_1"]
    live.close()
    tab.close()


def test_tokens_in_the_url_never_reach_the_logs(live_school: LiveSchool):
    token = live_school.api.client_token(live_school.school.emails["s7b_1"])
    tab = WSClient(live_school.server.url, token=token).connect()
    tab.hello()
    tab.close()
    live_school.server.stop()
    assert token not in live_school.server.log()
    assert token.split(".")[2] not in live_school.server.log()


# Bad input on the socket ------------------------------------------------------------------


def test_pings_old_and_new(live_school: LiveSchool):
    tab = live_school.tab("s7b_1")
    tab.send_text("ping")
    assert tab.recv() == "pong"
    tab.send_json({"type": "ping"})
    assert tab.expect("pong") == {"type": "pong"}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('{"type": "subscribe"}', "unknown_type"),
        ('{"type": "ack", "id": "x", "state": "read"}', "invalid_message"),
        ('{"type": "ack", "id": 1, "state": "pending"}', "invalid_message"),
        ('{"type": "resume", "last_id": -3}', "invalid_message"),
    ],
)
def test_garbage_gets_an_error_and_the_socket_lives_on(live_school: LiveSchool, frame, code):
    tab = live_school.tab("s7b_1")
    tab.send_text(frame)
    assert tab.expect("error")["code"] == code
    tab.send_json({"type": "ping"})
    assert tab.expect("pong")


def test_oversized_frames_close_with_1009(live_school: LiveSchool):
    tab = live_school.tab("s7b_1")
    frame = websocket.ABNF.create_frame("x" * (70 * 1024), websocket.ABNF.OPCODE_TEXT).format()
    # Send a little more than 64 KiB of the 70 KiB frame: the server must refuse it as
    # soon as it is too big, without waiting for (or buffering) the rest.
    tab.ws.sock.sendall(frame[: 14 + 64 * 1024 + 10])
    assert tab.close_status() == (1009, "Message is too big")


def test_compression_is_not_negotiated(live_school: LiveSchool):
    token = live_school.api.client_token(live_school.school.emails["s7b_1"])
    tab = WSClient(live_school.server.url, token=token, compression=True).connect()
    assert "sec-websocket-extensions" not in {k.lower() for k in tab.ws.getheaders()}
    assert tab.hello()


def test_a_message_flood_is_throttled(live_school: LiveSchool):
    tab = live_school.tab("s7b_1")
    for _ in range(80):
        tab.send_json({"type": "ping"})
    errors = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not errors:
        message = tab.recv()
        if isinstance(message, dict) and message.get("type") == "error":
            errors.append(message["code"])
    assert errors == ["rate_limited"]


# Receipts -------------------------------------------------------------------------------


def test_receipts_move_forward_only_and_show_in_the_status(live_school: LiveSchool):
    api = live_school.api
    tab = live_school.tab("s7b_1")
    sent = api.send("Please confirm", targets=TO_7B, require_ack=True)
    notification_id = tab.expect("notification")["id"]
    tab.ack(notification_id, "delivered")
    tab.ack(notification_id, "acknowledged")
    tab.ack(notification_id, "read")  # late and lower: must not move it back
    wait_for(lambda: counts(api, sent["id"])["acknowledged"] == 1)
    time.sleep(0.3)
    assert counts(api, sent["id"]) == {"pending": 5, "delivered": 0, "read": 0, "acknowledged": 1}
    status, body = api.call("GET", f"/notifications/{sent['id']}/deliveries?state=acknowledged")
    assert status == 200
    [row] = body["deliveries"]
    assert row["user"]["email"] == live_school.school.emails["s7b_1"]
    assert row["delivered_at"] and row["read_at"] and row["acknowledged_at"]


def test_receipts_for_what_you_did_not_receive_are_refused(live_school: LiveSchool):
    api = live_school.api
    other = api.send("Only 7a", targets={"classes": [{"name": "7a"}]})
    tab = live_school.tab("s7b_1")
    tab.ack(other["id"], "acknowledged")
    assert tab.expect("error")["code"] == "unknown_notification"
    time.sleep(0.3)
    assert counts(api, other["id"])["acknowledged"] == 0


def test_a_burst_of_receipts_is_recorded(live_school: LiveSchool):
    api = live_school.api
    tabs = [live_school.tab(h) for h in ("s7b_1", "s7b_2", "s7b_3", "g7b_1", "g7b_2", "g7b_3")]
    sent = [api.send(f"Burst {n}", targets=TO_7B)["id"] for n in range(10)]
    for tab in tabs:
        for message in tab.notifications(10):
            tab.ack(message["id"], "read")
    wait_for(lambda: all(counts(api, n)["read"] == 6 for n in sent))


# Shutdown ---------------------------------------------------------------------------------


def test_sigterm_closes_every_socket_with_1001_at_once(live_school: LiveSchool):
    tabs = [live_school.tab(h) for h in ("s7b_1", "s7b_2", "g7b_1", "t7b") for _ in range(5)]
    started = time.monotonic()
    live_school.server.proc.send_signal(signal.SIGTERM)
    codes = [tab.close_status(timeout=5)[0] for tab in tabs]
    assert codes == [1001] * len(tabs)
    assert time.monotonic() - started < 2.5
    live_school.server.proc.wait(timeout=15)


# Live status for dashboards -----------------------------------------------------------------


def watch(live_school: LiveSchool, handle: str, topics: str) -> WSClient:
    token = live_school.api.client_token(live_school.school.emails[handle])
    return WSClient(live_school.server.url, token=token, query=f"watch={topics}").connect()


def test_staff_watch_a_notifications_status_live(live_school: LiveSchool):
    sent = live_school.api.send("Status", targets=TO_7B)
    dashboard = watch(live_school, "t7b", f"notification:{sent['id']}")
    first = dashboard.recv()
    assert f'id="delivery-status-{sent["id"]}"' in first
    assert 'data-state="read">0<' in first
    tab = live_school.tab("g7b_1")
    tab.ack(tab.expect("notification")["id"], "read")
    update = dashboard.recv(timeout=3)
    assert 'data-state="read">1<' in update


@pytest.mark.parametrize(
    ("handle", "reason"), [("s7b_1", "Only staff"), ("t7a", "No announcement")]
)
def test_watching_is_for_those_who_may_see(live_school: LiveSchool, handle, reason):
    sent = live_school.api.send("Private", targets=TO_7B)
    dashboard = watch(live_school, handle, f"notification:{sent['id']}")
    code, message = dashboard.close_status()
    assert code == 1008 and message.startswith(reason)


def test_presence_is_pushed_as_people_come_and_go(live_school: LiveSchool):
    dashboard = watch(live_school, "admin", "online")
    assert 'data-online-count="0"' in dashboard.recv()
    tab = live_school.tab("s7b_2")
    update = dashboard.recv(timeout=3)
    assert 'data-online-count="1"' in update and "S7B_2" in update
    tab.close()
    assert 'data-online-count="0"' in dashboard.recv(timeout=3)


def test_a_teacher_is_pushed_their_own_online_panel_as_the_dashboard_shows_it(
    live_school: LiveSchool,
):
    from .helpers import session_cookie, signed_in

    url = live_school.server.url
    teacher = signed_in(url, live_school.school.emails["t7b"])
    dashboard = WSClient(
        url, cookie=session_cookie(teacher), origin=url, query="watch=online"
    ).connect()
    assert 'data-online-count="0"' in dashboard.recv()
    live_school.tab("s7a_1")  # not in the teacher's classes: never shown to them
    live_school.tab("s7b_2")
    pushed = dashboard.recv(timeout=3)
    while "S7B_2" not in pushed:
        pushed = dashboard.recv(timeout=3)

    assert 'data-online-count="1"' in pushed and "S7A_1" not in pushed
    assert '<li data-class="7b">' in pushed and 'data-class="7a"' not in pushed
    status, _, panel = teacher.request("/dashboard/online")
    assert status == 200 and panel == pushed
    status, _, page = teacher.request("/dashboard")
    assert status == 200 and pushed.strip() in page


def test_deactivating_a_user_closes_their_open_tabs(live_school: LiveSchool):
    from .helpers import deactivate, signed_in

    tabs = [live_school.tab("s7b_2"), live_school.tab("s7b_2")]
    bystander = live_school.tab("s7b_3")
    admin = signed_in(live_school.server.url, live_school.school.emails["admin"])
    assert deactivate(admin, live_school.school.ids["s7b_2"]) == 302
    assert [tab.close_status()[0] for tab in tabs] == [1008, 1008]
    bystander.send_json({"type": "ping"})
    assert bystander.expect("pong")


def test_reading_in_one_tab_tells_the_others(live_school: LiveSchool):
    first, second = live_school.tab("s7b_1"), live_school.tab("s7b_1")
    other_user = live_school.tab("s7b_2")
    sent = live_school.api.send("Read me", targets=TO_7B)
    for tab in (first, second, other_user):
        tab.expect("notification")
    first.ack(sent["id"], "delivered")  # delivery alone changes nothing elsewhere
    first.ack(sent["id"], "read")
    assert second.expect("receipt", timeout=3) == {
        "type": "receipt",
        "id": sent["id"],
        "state": "read",
    }
    assert first.expect("receipt", timeout=3)["id"] == sent["id"]
    with pytest.raises((AssertionError, websocket.WebSocketTimeoutException)):
        other_user.expect("receipt", timeout=0.7)


def test_sockets_over_the_cap_are_refused_before_the_handshake(
    app, database_url, live_server_factory
):
    from .school import build_school
    from .test_server import Browserish

    school = build_school(app)
    server = live_server_factory(database_url, WS_MAX_CONNECTIONS="2")
    live = LiveSchool(school, server)
    try:
        live.tab("s7b_1")
        live.tab("s7b_2")
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            live.tab("s7b_3")
        assert refused.value.status_code == 503
        assert refused.value.resp_headers.get("retry-after") == "5"
        status, _, _ = Browserish(server.url).request("/healthz")
        assert status == 200  # pages and health checks still answer
    finally:
        live.close()
