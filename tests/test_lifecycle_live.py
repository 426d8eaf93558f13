"""An announcement's life on real servers, seen by real sockets: a scheduled send goes
out once at its time across two processes and after a restart that spanned its time, a
cancelled one never goes; an edit changes open alerts in place and replay brings the
latest revision; a withdrawn or expired one disappears from open tabs and is never
replayed. Times are a few seconds ahead, on the servers' own clock."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from webapp.db import session_scope, utcnow
from webapp.models import AuditEvent, Delivery

from .helpers import wait_for
from .school import LiveSchool
from .test_scale_out import Cluster
from .wsclient import WSClient

TO_7B = {"classes": [{"name": "7b", "audience": ["students"]}]}
STUDENTS_7B = ("s7b_1", "s7b_2", "s7b_3")


def iso(seconds: float) -> str:
    return (utcnow() + timedelta(seconds=seconds)).isoformat()


def of_type(tab: WSClient, kind: str, notification_id: int) -> list[dict]:
    """What of `kind` for this announcement the tab has received so far."""
    return [
        m
        for m in tab.received
        if isinstance(m, dict) and m.get("type") == kind and m.get("id") == notification_id
    ]


def read_for(tabs: list[WSClient], seconds: float) -> None:
    """Keep reading every tab (pings answered, everything kept in `received`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for tab in tabs:
            tab.nothing_within(0.1)


def rows(app, model, *where) -> int:
    with app.app_context(), session_scope(app) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def two_processes(postgres, tmp_path, redis_server):
    """Servers on one PostgreSQL database and one Redis (test_scale_out.Cluster)."""
    cluster = Cluster(postgres, tmp_path, redis_server)
    yield cluster
    cluster.close()


# Scheduled sends (more than SEND_NOW_WITHIN ahead, or they go at once) ---------------


def test_a_scheduled_send_goes_out_once_at_its_time_with_two_processes(two_processes):
    cluster = two_processes
    one, two = cluster.start(), cluster.start()
    tabs = [one.tab("s7b_1", resume=0), two.tab("s7b_2", resume=0), two.tab("s7b_3", resume=0)]
    sent = one.api.send("Assembly", "In the hall", targets=TO_7B, send_at=iso(7))
    nid = sent["id"]
    assert one.api.call("GET", f"/notifications/{nid}")[1]["stage"] == "scheduled"
    read_for(tabs, 3)
    assert all(not of_type(tab, "notification", nid) for tab in tabs)  # not before its time
    for tab in tabs:
        tab.expect("notification", timeout=15)
    read_for(tabs, 2)  # a duplicate from the other process would show now
    assert [len(of_type(tab, "notification", nid)) for tab in tabs] == [1, 1, 1]
    assert rows(cluster.app, Delivery, Delivery.notification_id == nid) == 3
    sent_events = rows(
        cluster.app,
        AuditEvent,
        AuditEvent.action == "notification.sent",
        AuditEvent.subject == f"notification:{nid}",
    )
    assert sent_events == 1
    _, body = two.api.call("GET", f"/notifications/{nid}")
    assert body["stage"] == "sent" and body["late"] is False and body["recipient_count"] == 3


def test_a_send_due_while_no_server_ran_goes_out_at_start_marked_late(
    app, database_url, live_server_factory
):
    from .school import build_school

    school = build_school(app)
    env = {"SCHEDULED_LATE_AFTER_S": "1"}
    server = live_server_factory(database_url, **env)
    live = LiveSchool(school, server)
    nid = live.api.send("Late bus", "It comes at 8:30", targets=TO_7B, send_at=iso(6))["id"]
    server.stop()
    time.sleep(8)  # its time passes while nothing runs
    assert rows(app, Delivery, Delivery.notification_id == nid) == 0
    server.start()
    tab = live.tab("s7b_1", resume=0)
    assert tab.expect("notification", timeout=10)["id"] == nid
    _, body = live.api.call("GET", f"/notifications/{nid}")
    assert body["stage"] == "sent" and body["late"] is True
    live.close()


def test_a_cancelled_send_never_goes(live_school: LiveSchool):
    tab = live_school.tab("s7b_1", resume=0)
    nid = live_school.api.send("Trip", "Cancelled later", targets=TO_7B, send_at=iso(6))["id"]
    status, body = live_school.api.call("POST", f"/notifications/{nid}/retract")
    assert status == 200 and body["stage"] == "cancelled"
    assert tab.nothing_within(8)
    assert live_school.tab("s7b_2", resume=0).nothing_within(1)
    status, error = live_school.api.call("PATCH", f"/notifications/{nid}", {"title": "Again"})
    assert status == 409 and error["error"]["code"] == "already_withdrawn"


def test_edits_and_withdrawals_made_while_redis_was_away_reach_the_other_process(
    two_processes,
):
    cluster = two_processes
    a, b = cluster.start(), cluster.start()
    edited = a.api.send("Trip at 9", "Bring lunch", targets=TO_7B)["id"]
    withdrawn = a.api.send("Wrong room", "Room 12", targets=TO_7B)["id"]
    tab = b.tab("s7b_1", resume=0)
    tab.notifications(2)
    cluster.redis.stop()
    wait_for(lambda: cluster.health(1)["status"] == "degraded")
    assert a.api.call("PATCH", f"/notifications/{edited}", {"title": "Trip at 10"})[0] == 200
    assert a.api.call("POST", f"/notifications/{withdrawn}/retract")[0] == 200
    read_for([tab], 2)
    assert not of_type(tab, "update", edited) and not of_type(tab, "retract", withdrawn)
    cluster.redis.restart()  # B catches up from the database
    assert tab.expect("update", timeout=45)["title"] == "Trip at 10"
    read_for([tab], 1)
    assert of_type(tab, "retract", withdrawn)


# Edits --------------------------------------------------------------------------------


def test_an_edit_reaches_open_tabs_in_place_and_replay_brings_the_latest(
    live_school: LiveSchool,
):
    tab = live_school.tab("s7b_1", resume=0)
    nid = live_school.api.send("Trip at 9", "Bring lunch", targets=TO_7B)["id"]
    first = tab.expect("notification")
    assert first["id"] == nid and first["revision"] == 1 and first["edited_at"] is None
    status, body = live_school.api.call(
        "PATCH", f"/notifications/{nid}", {"title": "Trip at 10", "body": "Bring **tea**"}
    )
    assert status == 200 and body["revision"] == 2 and body["title"] == "Trip at 10"
    update = tab.expect("update")
    assert (update["id"], update["revision"], update["title"]) == (nid, 2, "Trip at 10")
    assert "<strong>tea</strong>" in update["body_html"] and update["edited_at"]
    assert update["reconfirm"] is False
    # A tab opened now gets the latest revision (it is still unread for s7b_2).
    fresh = live_school.tab("s7b_2", resume=0).expect("notification")
    assert (fresh["revision"], fresh["title"]) == (2, "Trip at 10")
    # A tab that was away while it changed, and still shows revision 1, is told.
    back = live_school.tab("s7b_3", resume=False)
    back.send_json({"type": "resume", "last_id": nid, "open": [[nid, 1]]})
    assert back.expect("update")["revision"] == 2
    status, revisions = live_school.api.call("GET", f"/notifications/{nid}/revisions")
    assert [r["title"] for r in revisions["revisions"]] == ["Trip at 9", "Trip at 10"]


def test_a_material_change_asks_again_those_who_confirmed(live_school: LiveSchool):
    tab = live_school.tab("s7b_1", resume=0)
    nid = live_school.api.send("Form", "Sign it", targets=TO_7B, require_ack=True)["id"]
    tab.expect("notification")
    tab.ack(nid, "acknowledged")
    deadline = time.monotonic() + 5
    while live_school.api.call("GET", f"/notifications/{nid}")[1]["counts"]["acknowledged"] < 1:
        assert time.monotonic() < deadline, "the confirmation was not recorded"
        time.sleep(0.1)
    status, body = live_school.api.call(
        "PATCH", f"/notifications/{nid}", {"body": "Sign the new one", "reconfirm": True}
    )
    assert status == 200 and body["counts"]["acknowledged"] == 0
    assert tab.expect("update")["reconfirm"] is True
    # Unconfirmed again: a reconnecting tab gets it again until confirmed.
    assert live_school.tab("s7b_1", resume=nid).expect("notification")["revision"] == 2


# Withdrawal and expiry ----------------------------------------------------------------


def test_a_withdrawn_announcement_disappears_from_open_tabs_and_is_never_replayed(
    live_school: LiveSchool,
):
    tabs = [live_school.tab("s7b_1", resume=0), live_school.tab("s7b_1", resume=0)]
    nid = live_school.api.send("Wrong room", "Room 12", targets=TO_7B)["id"]
    for tab in tabs:
        tab.expect("notification")
    status, body = live_school.api.call("POST", f"/notifications/{nid}/retract")
    assert status == 200 and body["stage"] == "withdrawn"
    for tab in tabs:
        assert tab.expect("retract")["id"] == nid
    assert live_school.tab("s7b_2", resume=0).nothing_within(1)  # pending, but withdrawn
    back = live_school.tab("s7b_3", resume=False)
    back.send_json({"type": "resume", "last_id": None, "open": [[nid, 1]]})
    assert back.expect("retract")["id"] == nid
    status, error = live_school.api.call("POST", f"/notifications/{nid}/retract")
    assert status == 409 and error["error"]["code"] == "already_withdrawn"


def test_an_expired_announcement_leaves_open_tabs_at_its_time(live_school: LiveSchool):
    tab = live_school.tab("s7b_1", resume=0)
    nid = live_school.api.send("Gym closed", "Today only", targets=TO_7B, expires_at=iso(3))["id"]
    tab.expect("notification")
    assert tab.expect("expire", timeout=10)["id"] == nid
    assert live_school.tab("s7b_2", resume=0).nothing_within(1)
    _, body = live_school.api.call("GET", f"/notifications/{nid}")
    assert body["stage"] == "expired"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"send_at": "2020-01-01T08:00:00Z"}, "not_scheduled"),
        ({"title": ""}, "title_required"),
        ({"nope": 1}, "unknown_field"),
        ({"expires_at": "tomorrow"}, "validation_failed"),
    ],
)
def test_bad_edits_are_refused_with_a_clear_error(live_school: LiveSchool, body, code):
    nid = live_school.api.send("Hello", "There", targets=TO_7B)["id"]
    status, error = live_school.api.call("PATCH", f"/notifications/{nid}", body)
    assert 400 <= status < 500 and error["error"]["code"] == code
    assert live_school.api.call("GET", f"/notifications/{nid}")[1]["revision"] == 1


# Devices a push reached ---------------------------------------------------------------


def test_a_device_a_push_reached_gets_the_edit_and_the_withdrawal_under_the_same_tag(
    app, database_url, push_service, live_server_factory
):
    from .school import build_school
    from .test_reach_live import pushes, reach_env, subscribe

    school = build_school(app)
    live = LiveSchool(school, live_server_factory(database_url, **reach_env(push_service)))
    subscribe(live, push_service, "s7b_1")
    subscribe(live, push_service, "s7b_2")  # never pushed: it has a tab open
    tab = live.tab("s7b_2", resume=0)
    nid = live.api.send("Trip at 9", "Bring lunch", targets=TO_7B)["id"]
    tab.ack(tab.expect("notification")["id"], "delivered")
    wait_for(lambda: pushes(push_service, "s7b_1"), timeout=10)
    assert live.api.call("PATCH", f"/notifications/{nid}", {"title": "Trip at 10"})[0] == 200
    wait_for(lambda: len(pushes(push_service, "s7b_1")) == 2, timeout=10)
    assert live.api.call("POST", f"/notifications/{nid}/retract")[0] == 200
    wait_for(lambda: len(pushes(push_service, "s7b_1")) == 3, timeout=10)
    first, edited, withdrawn = (p.message for p in pushes(push_service, "s7b_1"))
    assert first["tag"] == edited["tag"] == withdrawn["tag"] == str(nid)
    assert (edited["type"], edited["title"]) == ("notification", "Trip at 10")
    assert withdrawn["type"] == "retract" and withdrawn["title"] == "Withdrawn: Trip at 10"
    assert withdrawn["receipt"] is None
    assert pushes(push_service, "s7b_2") == []
    assert push_service.errors == []
    live.close()
