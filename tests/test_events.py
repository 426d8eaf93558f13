"""Broker events: typed values that encode to compact JSON naming what to load (never
bodies or lists of recipients) and decode back, refusing anything else; the broker
hands this process's own events over as they are."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import gevent
import pytest

from webapp.realtime import events
from webapp.realtime.broker import Broker
from webapp.realtime.events import (
    CloseUser,
    EventError,
    Fanout,
    NotificationsDeleted,
    NotificationSent,
    PresenceChanged,
    ReceiptsRecorded,
)

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
READ_AT = datetime(2025, 9, 1, 7, 31, 2, 250_000, tzinfo=UTC)
EVENTS = [
    NotificationSent(7, Fanout((3, 4, 5), MESSAGE)),
    NotificationSent(7),
    ReceiptsRecorded((7, 9), READ_AT, ((3, 7, "read"), (4, 9, "acknowledged"))),
    ReceiptsRecorded((7,), None, ()),
    CloseUser(3, "account disabled"),
    PresenceChanged("host-a:4711:beef01"),
    NotificationsDeleted((7, 9)),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_survives_encode_and_decode(event):
    encoded = event.encode()
    assert isinstance(encoded, bytes)
    assert events.decode(encoded) == event


def test_the_wire_form_is_compact_json_naming_what_to_load():
    assert CloseUser(3, "bye").encode() == b'{"type":"close_user","user_id":3,"reason":"bye"}'
    # What only the publishing process holds stays there: no body, no recipient list.
    sent = NotificationSent(7, Fanout(tuple(range(1, 10_001)), MESSAGE))
    assert sent.encode() == b'{"type":"notification_sent","id":7}'
    receipts = ReceiptsRecorded((7,), READ_AT, tuple((u, 7, "read") for u in range(1, 10_001)))
    assert json.loads(receipts.encode()) == {
        "type": "receipts_recorded",
        "notification_ids": [7],
        "read_since": "2025-09-01T07:31:02.250000+00:00",
    }
    assert PresenceChanged("a:1:ff").encode() == b'{"type":"presence_changed","process":"a:1:ff"}'


def test_a_decoded_event_has_nothing_but_what_the_wire_carried():
    assert events.decode(NotificationSent(7, Fanout((3,), MESSAGE)).encode()).fanout is None
    assert events.decode(EVENTS[2].encode()).seen is None


def wire(**payload) -> bytes:
    return json.dumps(payload).encode()


GOOD_SENT = {"type": "notification_sent", "id": 7}


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
        (wire(type="receipts_recorded", read_since=None), "notification_ids must be a list"),
        (wire(type="receipts_recorded", notification_ids=[7, "8"]), "notification_ids must be"),
        (
            wire(type="receipts_recorded", notification_ids=[7], read_since="yesterday"),
            "read_since must be an ISO time",
        ),
        (
            wire(type="receipts_recorded", notification_ids=[7], read_since=5),
            "read_since must be an ISO time",
        ),
        (
            wire(type="receipts_recorded", notification_ids=[7], read_since="2025-09-01T07:31"),
            "read_since must have a time zone",
        ),
        (wire(type="presence_changed"), "process must be a process name"),
        (wire(type="presence_changed", process=""), "process must be a process name"),
        (wire(type="presence_changed", process="x" * 201), "process must be a process name"),
        (wire(type="close_user", user_id=3), "reason must be a string"),
        (wire(type="close_user", reason="bye"), "user_id must be an id"),
        (b"[" * 100_000, "UTF-8 JSON"),
        (wire(type="notifications_deleted", ids=[]), "ids must hold 1 to 100 ids"),
        (wire(type="notifications_deleted", ids=list(range(1, 102))), "must hold 1 to 100"),
        (wire(type="notifications_deleted", ids=[7, 0]), "notifications_deleted.ids must be an id"),
    ],
)
def test_decode_refuses_what_is_not_a_well_formed_event(raw, says):
    with pytest.raises(EventError) as refused:
        events.decode(raw)
    assert says in str(refused.value)


def test_the_in_process_broker_hands_over_the_very_same_objects_in_order():
    received = []
    broker = Broker()
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

    broker = Broker()
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
