"""The roll call and the all clear against a real gunicorn + gevent server, with real
WebSocket clients: an answer shows up live on the staff status socket; answers that
are no roll call's are refused; the all clear reaches every open tab and replay never
brings the emergency back; the API and the status page show both."""

from __future__ import annotations

import re

import pytest

from .helpers import csrf_token_from, session_cookie, signed_in
from .wsclient import WSClient


@pytest.fixture
def school(live_school):
    return live_school


def send_emergency(school, **fields) -> int:
    return school.api.send(
        "Lockdown",
        "Stay inside.",
        priority="emergency",
        targets={"classes": [{"name": "7b", "audience": ["students"]}]},
        **fields,
    )["id"]


def watch_status(school, nid: int) -> tuple[WSClient, object]:
    """A signed-in admin's dashboard socket on the announcement's status, its first
    fragment read."""
    url = school.server.url
    browser = signed_in(url, school.school.emails["admin"])
    dashboard = WSClient(
        url, cookie=session_cookie(browser), origin=url, query=f"watch=notification:{nid}"
    ).connect()
    first = dashboard.recv()
    assert f'id="roll-call-{nid}"' in first and 'data-answer="none">3<' in first
    return dashboard, browser


def pushed_until(dashboard: WSClient, text: str, latest: str = "") -> str:
    """The latest fragment pushed to the dashboard socket once one contains `text`
    (`latest`: the one already read; pushes are coalesced, so it may have it)."""
    fragment = latest
    while text not in fragment:
        fragment = dashboard.recv(timeout=5)
    return fragment


def test_an_answer_shows_up_live_on_the_status_socket(school):
    nid = send_emergency(school)
    dashboard, browser = watch_status(school, nid)
    tab = school.tab("s7b_2")
    tab.expect("notification")

    tab.send_json(
        {"type": "answer", "id": nid, "status": "help", "text": "<b>Room 12</b>, door stuck"}
    )
    pushed = pushed_until(dashboard, 'data-answer="help">1<')

    roll = re.search(rf'<section id="roll-call-{nid}".*?</section>', pushed, re.S).group(0)
    assert 'data-answer="none">2<' in roll and 'data-answer="safe">0<' in roll
    assert "&lt;b&gt;Room 12&lt;/b&gt;, door stuck" in roll and "<b>Room 12" not in roll
    assert roll.index("S7B_2") < roll.index("S7B_1")  # who needs help comes first
    # It counts as reading the alert, too.
    assert 'data-state="pending">2<' in pushed_until(dashboard, 'data-state="read">1<', pushed)
    status, _, page = browser.request(f"/notifications/{nid}")
    assert status == 200 and "&lt;b&gt;Room 12&lt;/b&gt;, door stuck" in page

    # The API shows the answer and the roll call's counts.
    _, deliveries = school.api.call("GET", f"/notifications/{nid}/deliveries")
    by_email = {row["user"]["email"]: row for row in deliveries["deliveries"]}
    assert by_email["s7b_2@school.test"]["answer"] == "help"
    assert by_email["s7b_2@school.test"]["answer_text"] == "<b>Room 12</b>, door stuck"
    assert by_email["s7b_1@school.test"]["answer"] is None
    _, detail = school.api.call("GET", f"/notifications/{nid}")
    assert detail["roll_call"] == {"safe": 0, "help": 1, "no_answer": 2}
    assert detail["drill"] is False and detail["all_clear_at"] is None


def test_answers_that_are_no_roll_calls_are_refused(school):
    normal = school.api.send(
        "Trip", "Bring lunch.", targets={"classes": [{"name": "7b", "audience": ["students"]}]}
    )["id"]
    emergency = send_emergency(school)
    outsider = school.tab("s7a_1")
    recipient = school.tab("s7b_1")
    recipient.notifications(2)

    for tab, nid in ((recipient, normal), (outsider, emergency)):
        tab.send_json({"type": "answer", "id": nid, "status": "safe", "text": None})
        error = tab.expect("error")
        assert (error["code"], str(nid) in error["message"]) == ("unknown_emergency", True)
    _, detail = school.api.call("GET", f"/notifications/{emergency}")
    assert detail["roll_call"] == {"safe": 0, "help": 0, "no_answer": 3}


def test_the_all_clear_reaches_open_tabs_and_replay_never_brings_the_emergency(school):
    nid = send_emergency(school, drill=True)
    tabs = [school.tab("s7b_1"), school.tab("s7b_1"), school.tab("s7b_3")]
    for tab in tabs:
        assert tab.expect("notification")["drill"] is True

    status, ended = school.api.call("POST", f"/notifications/{nid}/all-clear", {"message": "Over."})

    assert status == 200 and ended["all_clear_message"] == "Over."
    for tab in tabs:
        assert tab.expect("all_clear") == {
            "type": "all_clear",
            "id": nid,
            "message": "Over.",
            "drill": True,
        }
    later = school.tab("s7b_2", resume=0)
    assert later.nothing_within(0.5)
    tabs[0].send_json({"type": "answer", "id": nid, "status": "safe", "text": None})
    assert tabs[0].expect("error")["code"] == "unknown_emergency"
    again, body = school.api.call("POST", f"/notifications/{nid}/all-clear", {})
    assert (again, body["error"]["code"]) == (409, "emergency_over")


def test_the_status_page_gives_the_all_clear_with_the_templates_words(school):
    nid = send_emergency(school)
    tab = school.tab("s7b_1")
    tab.expect("notification")
    teacher = signed_in(school.server.url, school.school.emails["t7b"])
    _, _, seen_by_teacher = teacher.request(f"/notifications/{nid}")
    admin = signed_in(school.server.url, school.school.emails["admin"])
    _, _, page = admin.request(f"/notifications/{nid}")

    assert 'id="all-clear-form"' in page and 'id="all-clear-form"' not in seen_by_teacher
    assert "The emergency is over and it is safe now." in page
    status, _, _ = admin.request(
        f"/notifications/{nid}/all-clear", {"csrf_token": csrf_token_from(page), "message": ""}
    )

    assert status == 302
    message = tab.expect("all_clear")["message"]
    assert message.startswith("The emergency is over and it is safe now.")
    _, _, after = admin.request(f"/notifications/{nid}")
    assert 'id="all-clear-given"' in after and 'id="all-clear-form"' not in after
