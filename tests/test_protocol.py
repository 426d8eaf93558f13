"""The /ws wire protocol: what clients may send, and the shape of what the server sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from webapp import errors
from webapp.models import Priority
from webapp.realtime import protocol
from webapp.realtime.protocol import Ack, Auth, Ping, ProtocolError, Resume, parse_client

# Ids are INTEGER columns: 32-bit signed on PostgreSQL (64-bit on SQLite). A larger id
# from a client reaches a query and fails there (PostgreSQL: "integer out of range";
# SQLite, past 2^63-1: OverflowError), which kills the socket with a server error.
MAX_ID = 2**31 - 1


def refused(raw) -> ProtocolError:
    """parse_client(raw) must raise ProtocolError; return it."""
    with pytest.raises(ProtocolError) as caught:
        parse_client(raw)
    return caught.value


# Pings ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["ping", " ping", "ping\n", "\t ping \r\n", b"ping", b" ping\n"])
def test_plain_text_ping_is_the_legacy_keep_alive(raw):
    assert parse_client(raw) == Ping(legacy=True)


@pytest.mark.parametrize(
    "raw",
    [
        '{"type":"ping"}',
        ' { "type" : "ping" } ',
        b'{"type": "ping"}',
        '{"type": "ping", "extra": [1]}',
    ],
)
def test_json_ping_is_not_legacy(raw):
    assert parse_client(raw) == Ping(legacy=False)


@pytest.mark.parametrize("raw", ["PING", "pingping", "p ing", '"ping"'])
def test_only_the_exact_word_is_a_legacy_ping(raw):
    assert refused(raw).code in ("invalid_json", "invalid_message")


# Auth -------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["a.b.c", "x", "t" * 4096, "ünïcode-token"])
def test_auth_carries_the_token(token):
    assert parse_client(json.dumps({"type": "auth", "token": token})) == Auth(token)


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "auth"},
        {"type": "auth", "token": None},
        {"type": "auth", "token": ""},
        {"type": "auth", "token": 12345},
        {"type": "auth", "token": ["a.b.c"]},
        {"type": "auth", "token": {"jwt": "a.b.c"}},
        {"type": "auth", "token": True},
        {"type": "auth", "token": "t" * 4097},
    ],
    ids=["missing", "null", "empty", "int", "list", "object", "bool", "over-4096"],
)
def test_auth_without_a_usable_token_is_refused(payload):
    error = refused(json.dumps(payload))
    assert error.code == "invalid_message"
    assert "token" in error.message


# Resume -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "last_id"),
    [
        ({"type": "resume"}, None),
        ({"type": "resume", "last_id": None}, None),
        ({"type": "resume", "last_id": 0}, 0),
        ({"type": "resume", "last_id": 42}, 42),
        ({"type": "resume", "last_id": MAX_ID}, MAX_ID),
    ],
)
def test_resume_takes_an_optional_last_id(payload, last_id):
    assert parse_client(json.dumps(payload)) == Resume(last_id)


@pytest.mark.parametrize(
    "last_id",
    [-1, -3, True, False, "5", "", 1.0, 1.5, [1], {"id": 1}, MAX_ID + 1, 2**63, 2**64, 10**30],
    ids=[
        "-1",
        "-3",
        "true",
        "false",
        "string",
        "empty-string",
        "float-integral",
        "float",
        "list",
        "object",
        "2^31",
        "2^63",
        "2^64",
        "10^30",
    ],
)
def test_resume_with_a_bad_last_id_is_refused(last_id):
    """Anything but a non-negative integer that fits an id column is refused."""
    error = refused(json.dumps({"type": "resume", "last_id": last_id}))
    assert error.code == "invalid_message"
    assert "last_id" in error.message


# Ack --------------------------------------------------------------------------------


@pytest.mark.parametrize("state", protocol.ACK_STATES)
@pytest.mark.parametrize("notification_id", [0, 1, 987654, MAX_ID])
def test_every_ack_state_is_accepted(state, notification_id):
    raw = json.dumps({"type": "ack", "id": notification_id, "state": state})
    assert parse_client(raw) == Ack(notification_id, state)


def test_the_ack_states_are_the_receipts_after_pending():
    assert protocol.ACK_STATES == ("delivered", "read", "acknowledged")


@pytest.mark.parametrize("state", ["pending", "READ", "Delivered", "seen", "", None, 1, ["read"]])
def test_ack_with_a_bad_state_is_refused(state):
    error = refused(json.dumps({"type": "ack", "id": 1, "state": state}))
    assert error.code == "invalid_message"
    assert "state" in error.message


def test_ack_without_a_state_is_refused():
    assert refused('{"type": "ack", "id": 1}').code == "invalid_message"


@pytest.mark.parametrize("count", [1, 3, protocol.MAX_TABS])
def test_a_leader_tab_says_how_many_tabs_share_its_socket(count):
    assert protocol.parse_client(json.dumps({"type": "tabs", "count": count})) == protocol.Tabs(
        count
    )


@pytest.mark.parametrize("count", [0, -1, protocol.MAX_TABS + 1, 2.5, "3", True, None, [3]])
def test_a_tab_count_out_of_range_is_refused(count):
    error = refused(json.dumps({"type": "tabs", "count": count}))
    assert error.code == "invalid_message"
    assert error.message == "'count' must be a whole number from 1 to 100"


@pytest.mark.parametrize(
    "notification_id",
    [None, -1, True, "7", 7.0, 7.5, [7], MAX_ID + 1, 2**63, 2**64],
    ids=[
        "null",
        "negative",
        "bool",
        "string",
        "float-integral",
        "float",
        "list",
        "2^31",
        "2^63",
        "2^64",
    ],
)
def test_ack_with_a_bad_id_is_refused(notification_id):
    error = refused(json.dumps({"type": "ack", "id": notification_id, "state": "read"}))
    assert error.code == "invalid_message"
    assert "'id'" in error.message


def test_ack_without_an_id_is_refused():
    assert refused('{"type": "ack", "state": "read"}').code == "invalid_message"


# Garbage ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["subscribe", "PING", "Auth", "", "hello", "notification", "pong"])
def test_unknown_types_are_named_in_the_error(kind):
    error = refused(json.dumps({"type": kind}))
    assert error.code == "unknown_type"
    assert repr(kind) in error.message


@pytest.mark.parametrize(
    "raw",
    [
        "[1, 2]",
        "[]",
        "null",
        "42",
        "true",
        '"auth"',
        "{}",
        '{"token": "a.b.c"}',
        '{"type": null}',
        '{"type": 1}',
        '{"type": ["ping"]}',
        "NaN",
    ],
)
def test_json_that_is_not_a_typed_object_is_an_invalid_message(raw):
    error = refused(raw)
    assert error.code == "invalid_message"
    assert "'type'" in error.message


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "",
        "   ",
        "{'type': 'ping'}",
        '{"type":',
        "pong",
        b"\x00\x01",
        b'{"type": "ping"',
    ],
)
def test_text_that_is_not_json_is_invalid_json(raw):
    assert refused(raw).code == "invalid_json"


@pytest.mark.parametrize(
    "raw", [b"\xff\xfe", b'{"type": "\xc3"}', b"\x80ping", "ping".encode("utf-16")]
)
def test_bytes_that_are_not_utf8_are_invalid_json(raw):
    error = refused(raw)
    assert error.code == "invalid_json"
    assert "UTF-8" in error.message


def test_a_protocol_error_is_a_value_error_with_its_message():
    error = refused("{")
    assert isinstance(error, ValueError)
    assert str(error) == error.message


# Server messages ----------------------------------------------------------------------

NOTIFICATION_FIELDS = {
    "type",
    "id",
    "revision",
    "title",
    "body_html",
    "priority",
    "require_ack",
    "confirm_by",
    "drill",
    "created_at",
    "edited_at",
    "expires_at",
    "link",
    "author",
}
CREATED = datetime(2026, 3, 2, 7, 45, 0, tzinfo=UTC)


def notification_row(**changes) -> SimpleNamespace:
    """Something shaped like a Notification row, with extra columns that must not leak."""
    fields = dict(
        id=17,
        title="Trip tomorrow",
        body="Bring **lunch**",
        body_html="<p>Bring <strong>lunch</strong></p>",
        priority=Priority.URGENT,
        require_ack=1,
        revision=2,
        confirm_by=None,
        drill=0,
        created_at=CREATED - timedelta(hours=1),
        sent_at=CREATED,
        edited_at=None,
        expires_at=CREATED + timedelta(days=1),
        link="https://school.test/trip",
        author_id=3,
        idempotency_key="k-1",
        recipient_count=6,
        retracted_at=None,
    )
    return SimpleNamespace(**{**fields, **changes})


def test_notification_has_exactly_the_documented_fields():
    message = protocol.notification(notification_row(), "Ada Admin")
    assert message == {
        "type": "notification",
        "id": 17,
        "revision": 2,
        "title": "Trip tomorrow",
        "body_html": "<p>Bring <strong>lunch</strong></p>",
        "priority": "urgent",
        "require_ack": True,
        "confirm_by": None,
        "drill": False,
        "created_at": "2026-03-02T07:45:00+00:00",
        "edited_at": None,
        "expires_at": "2026-03-03T07:45:00+00:00",
        "link": "https://school.test/trip",
        "author": "Ada Admin",
    }
    assert set(message) == NOTIFICATION_FIELDS


@pytest.mark.parametrize("priority", list(Priority))
def test_notification_priority_is_its_plain_value(priority):
    message = protocol.notification(notification_row(priority=priority), None)
    assert message["priority"] == priority.value
    assert type(message["priority"]) is str
    assert json.loads(protocol.encode(message))["priority"] == priority.value


def test_notification_optional_fields_are_null():
    message = protocol.notification(
        notification_row(require_ack=0, expires_at=None, link=None), None
    )
    assert message["require_ack"] is False
    assert message["expires_at"] is None and message["link"] is None
    assert message["author"] is None
    decoded = json.loads(protocol.encode(message))
    assert decoded == message
    assert set(decoded) == NOTIFICATION_FIELDS


def test_server_message_shapes():
    assert protocol.pong() == {"type": "pong"}
    assert protocol.error("rate_limited", "too many") == {
        "type": "error",
        "code": "rate_limited",
        "message": "too many",
    }
    assert protocol.error(errors.UNKNOWN_NOTIFICATION, id=5) == {
        "type": "error",
        "code": "unknown_notification",
        "message": "notification 5 was not sent to you",
    }
    assert protocol.hello(3, "Ann", CREATED, "e1") == {
        "type": "hello",
        "user": {"id": 3, "name": "Ann"},
        "server_time": "2026-03-02T07:45:00+00:00",
        "epoch": "e1",
    }


def test_encode_is_compact_json():
    message = {"type": "notification", "id": 1, "tags": [1, 2], "nested": {"a": None}}
    text = protocol.encode(message)
    assert text == '{"type":"notification","id":1,"tags":[1,2],"nested":{"a":null}}'
    assert json.loads(text) == message


@pytest.mark.parametrize("title", ["Ausflug \u2013 Grüße", "Экскурсия", "遠足", "رحلة", "🎒 Trip"])
def test_encode_keeps_non_ascii_as_is(title):
    text = protocol.encode(protocol.notification(notification_row(title=title), "Zoë"))
    assert f'"title":"{title}"' in text
    assert '"author":"Zoë"' in text
    assert "\\u" not in text


def test_encode_escapes_what_json_must_escape():
    text = protocol.encode({"title": 'a "quoted"\nline</script>'})
    assert json.loads(text) == {"title": 'a "quoted"\nline</script>'}
    assert "\n" not in text
