"""Broker events: typed values that encode to compact JSON and decode back, refusing
anything else; the in-process broker hands them over as they are."""

from __future__ import annotations

import json

import gevent
import pytest

from webapp.realtime import events
from webapp.realtime.broker import InProcessBroker
from webapp.realtime.events import CloseUser, EventError, NotificationSent, ReceiptsRecorded

MESSAGE = {
    "type": "notification",
    "id": 7,
    "title": "Früh, early",
    "body_html": "<p>Bring <strong>lunch</strong>.</p>",
    "priority": "urgent",
    "require_ack": True,
    "created_at": "2025-09-01T07:30:00+00:00",
    "expires_at": None,
    "link": None,
    "author": "Ada",
}
EVENTS = [
    NotificationSent(7, (3, 4, 5), MESSAGE),
    NotificationSent(7, (), MESSAGE),
    ReceiptsRecorded((7, 9), ((3, 7, "read"), (4, 9, "acknowledged"))),
    ReceiptsRecorded((7,), ()),
    CloseUser(3, "account disabled"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_survives_encode_and_decode(event):
    encoded = event.encode()
    assert isinstance(encoded, bytes)
    assert events.decode(encoded) == event


def test_the_wire_form_is_compact_json_with_a_type():
    assert CloseUser(3, "bye").encode() == b'{"type":"close_user","user_id":3,"reason":"bye"}'
    assert json.loads(ReceiptsRecorded((7,), ((3, 7, "read"),)).encode()) == {
        "type": "receipts_recorded",
        "notification_ids": [7],
        "seen": [[3, 7, "read"]],
    }
    assert "Früh".encode() in NotificationSent(7, (3,), MESSAGE).encode()  # not \u-escaped


def wire(**payload) -> bytes:
    return json.dumps(payload).encode()


GOOD_SENT = {"type": "notification_sent", "id": 7, "user_ids": [3], "message": MESSAGE}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "UTF-8 JSON"),
        (b"\xff\xfe", "UTF-8 JSON"),
        (b"{not json", "UTF-8 JSON"),
        (b"[1, 2]", "JSON object"),
        (wire(id=7), "unknown event type None"),
        (wire(type="notification", id=7), "unknown event type 'notification'"),
        (wire(type=["close_user"]), "unknown event type"),
        (wire(**{**GOOD_SENT, "id": "7"}), "notification_sent.id must be an id"),
        (wire(**{**GOOD_SENT, "id": True}), "notification_sent.id must be an id"),
        (wire(**{**GOOD_SENT, "id": 0}), "notification_sent.id must be an id"),
        (wire(**{**GOOD_SENT, "id": 2**31}), "notification_sent.id must be an id"),
        (wire(**{**GOOD_SENT, "user_ids": 3}), "user_ids must be a list"),
        (wire(**{**GOOD_SENT, "user_ids": [3, None]}), "user_ids must be an id"),
        (wire(**{**GOOD_SENT, "message": "hi"}), "message must be a notification"),
        (wire(**{**GOOD_SENT, "message": {**MESSAGE, "type": "pong"}}), "must be a notification"),
        (wire(**{**GOOD_SENT, "id": 8}), "message is not notification 8"),
        (wire(type="receipts_recorded", notification_ids=[7]), "seen must be a list"),
        (wire(type="receipts_recorded", seen=[]), "notification_ids must be a list"),
        (wire(type="receipts_recorded", notification_ids=[7], seen=[[3, 7]]), "each is [user"),
        (
            wire(type="receipts_recorded", notification_ids=[7], seen=[[3, 7, "lost"]]),
            "each is [user",
        ),
        (
            wire(type="receipts_recorded", notification_ids=[7], seen=[["3", 7, "read"]]),
            "seen must be an id",
        ),
        (wire(type="close_user", user_id=3), "reason must be a string"),
        (wire(type="close_user", reason="bye"), "user_id must be an id"),
        (b"[" * 100_000, "UTF-8 JSON"),
    ],
)
def test_decode_refuses_what_is_not_a_well_formed_event(raw, says):
    with pytest.raises(EventError) as refused:
        events.decode(raw)
    assert says in str(refused.value)


def test_the_in_process_broker_hands_over_the_very_same_objects_in_order():
    received = []
    broker = InProcessBroker()
    broker.start(received.append)
    sent = list(EVENTS)
    for event in sent:
        broker.publish(event)
    gevent.sleep(0.01)
    assert len(received) == len(sent)
    assert all(got is published for got, published in zip(received, sent, strict=True))


def test_one_failing_event_does_not_stop_the_next(caplog):
    received = []

    def handler(event):
        if isinstance(event, CloseUser):
            raise RuntimeError("boom")
        received.append(event)

    broker = InProcessBroker()
    broker.start(handler)
    broker.publish(CloseUser(3, "bye"))
    broker.publish(EVENTS[0])
    gevent.sleep(0.01)
    assert received == [EVENTS[0]]
    assert "broker handler failed on close_user event" in caplog.text


def test_every_event_type_has_its_handler_in_live(app):
    runtime = app.extensions["schoolbell.live"]
    assert set(runtime.handlers) == set(events.EVENT_TYPES.values())


def test_live_ignores_what_is_not_an_event_with_a_warning(app, caplog):
    app.extensions["schoolbell.live"].handle({"type": "close_user", "user_id": 3})
    assert "unknown broker event" in caplog.text
