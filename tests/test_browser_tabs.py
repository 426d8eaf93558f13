"""One WebSocket per browser, in a real Chromium against a real gunicorn + gevent server:
the tabs of one user share the socket of a leader tab (Web Locks + BroadcastChannel),
every tab still shows every alert, receipts go through the leader, a tab takes over
when the leader closes, and without those APIs each tab keeps a socket of its own."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from .browser import (
    EMBED_PAGE,
    Sockets,
    notified,
    poll,
    sign_in,
    wait_live,
    watch_console,
    watch_status,
)
from .school import LiveSchool, build_school

pytestmark = pytest.mark.browser

# What the browser would be without the two APIs (older Safari had neither).
NO_SHARING = "delete window.BroadcastChannel; delete Navigator.prototype.locks;"


class Tab:
    """One page of the browser context: its sockets, console and recorded events."""

    def __init__(self, context: BrowserContext):
        self.page = context.new_page()
        self.errors = watch_console(self.page)
        self.warnings: list[str] = []
        self.page.on(
            "console",
            lambda m: self.warnings.append(m.text) if m.type == "warning" else None,
        )
        self.sockets = Sockets(self.page)
        watch_status(self.page)

    def open(self, url: str) -> Tab:
        self.page.goto(url)
        wait_live(self.page)
        return self

    def toast(self, notification_id: int):
        return self.page.locator(f"#schoolbell-toast-{notification_id}")

    def sent(self, kind: str) -> list[dict]:
        """Messages of `kind` this tab sent, on all its sockets."""
        return [m for frames in self.sockets.sent for m in frames if m.get("type") == kind]


def tabs_of(live_school, context: BrowserContext, n: int) -> list[Tab]:
    """s7b_1 signed in (the first tab, which becomes the leader) and n - 1 more tabs on
    /inbox, all online."""
    url = live_school.server.url
    first = Tab(context)
    sign_in(first.page, url, live_school.school.emails["s7b_1"])
    wait_live(first.page)
    return [first] + [Tab(context).open(url + "/inbox") for _ in range(n - 1)]


def sockets_opened(tabs: list[Tab]) -> list[int]:
    """Announcement sockets each tab opened (a dashboard's `?watch=` socket is another
    matter)."""
    return [len([ws for ws in tab.sockets.opened if "watch=" not in ws.url]) for tab in tabs]


def written_to(live_school, notification_id: int) -> int:
    """How many sockets the server wrote the announcement to (its log says)."""
    pattern = re.compile(rf"notification {notification_id}: written to (\d+) sockets")
    log = poll(live_school.server.log, lambda text: pattern.search(text) is not None)
    match = pattern.search(log)
    assert match, f"no fan-out logged for {notification_id}"
    return int(match.group(1))


def counts(live_school, notification_id: int, until) -> dict:
    def fetch():
        code, body = live_school.api.call("GET", f"/notifications/{notification_id}")
        assert code == 200, body
        return body["counts"]

    return poll(fetch, until)


def to_student(live_school, title: str, **fields) -> int:
    return live_school.api.send(
        title, "For you.", targets={"users": [live_school.school.emails["s7b_1"]]}, **fields
    )["id"]


def assert_quiet(tabs: list[Tab]) -> None:
    """No errors, and no warnings from schoolbell.js (the `error` an older server answers
    `tabs` with is expected and ignored)."""
    for tab in tabs:
        assert tab.errors == [], tab.errors
        assert [w for w in tab.warnings if w.startswith("schoolbell:")] == []


def test_three_tabs_share_one_socket_and_all_show_the_alert(
    context: BrowserContext, live_school, artifacts
):
    tabs = tabs_of(live_school, context, 3)
    leader = tabs[0]
    assert sockets_opened(tabs) == [1, 0, 0]
    leader.sockets.wait_for(
        lambda: leader.sent("tabs") and leader.sent("tabs")[-1]["count"] == 3,
        what="tabs: 3",
    )

    nid = to_student(live_school, "Bus is late", priority="urgent")
    for tab in tabs:
        expect(tab.toast(nid)).to_be_visible()
        expect(tab.page.locator(f"#inbox-item-{nid}")).to_be_visible()  # each page reacted
        assert notified(tab.page) == [nid]
    tabs[1].page.screenshot(path=artifacts / "tabs-follower-alert.png")
    assert written_to(live_school, nid) == 1
    counts(live_school, nid, lambda c: c["delivered"] == 1)
    delivered = [m for m in leader.sent("ack") if m["id"] == nid and m["state"] == "delivered"]
    assert delivered == [{"type": "ack", "id": nid, "state": "delivered"}]  # once per browser

    # A follower that goes says goodbye: the leader reports one tab fewer at once.
    tabs[2].page.close()
    leader.sockets.wait_for(lambda: leader.sent("tabs")[-1]["count"] == 2, 3, "tabs: 2")
    assert all(1 <= m["count"] <= 100 for m in leader.sent("tabs"))
    assert sockets_opened(tabs[:2]) == [1, 0]
    assert_quiet(tabs)


def test_closing_the_leader_hands_the_socket_to_another_tab(context: BrowserContext, live_school):
    tabs = tabs_of(live_school, context, 3)
    first = to_student(live_school, "Before")
    for tab in tabs:
        expect(tab.toast(first)).to_be_visible()

    tabs[0].page.close()
    closed_at = time.monotonic()
    # Sent while no tab holds a socket: the tab that takes over resumes and gets it.
    during = to_student(live_school, "During the handover")
    rest = tabs[1:]
    for tab in rest:
        expect(tab.toast(during)).to_be_visible(timeout=5000)
    assert sorted(sockets_opened(rest)) == [0, 1]
    new_leader = rest[0] if sockets_opened(rest)[0] else rest[1]
    handover_s = time.monotonic() - closed_at
    assert handover_s < 2, f"the next tab showed it {handover_s:.1f} s after the leader closed"
    assert new_leader.sockets.messages("resume", sent=True)[0]["last_id"] >= first

    wait_live(new_leader.page)
    new_leader.sockets.wait_for(
        lambda: new_leader.sent("tabs") and new_leader.sent("tabs")[-1]["count"] == 2,
        what="tabs: 2",
    )
    after = to_student(live_school, "After")
    for tab in rest:
        expect(tab.toast(after)).to_be_visible(timeout=3000)
        assert notified(tab.page) == [first, during, after]  # each once
        expect(tab.page.locator(".schoolbell-toast")).to_have_count(3)
    assert written_to(live_school, after) == 1
    assert sorted(sockets_opened(rest)) == [0, 1]
    assert_quiet(tabs)


def test_a_leader_gone_before_relaying_an_alert_loses_nothing(context: BrowserContext, live_school):
    tabs = tabs_of(live_school, context, 3)
    leader, followers = tabs[0], tabs[1:]
    first = to_student(live_school, "Seen by all")
    for tab in tabs:
        expect(tab.toast(first)).to_be_visible()

    # The leader stops relaying: it gets the next one, remembers it, acknowledges it, and
    # goes before any other tab has it.
    leader.page.evaluate("BroadcastChannel.prototype.postMessage = function () {}")
    lost = to_student(live_school, "Only the leader had it")
    expect(leader.toast(lost)).to_be_visible()
    counts(live_school, lost, lambda c: c["delivered"] == 1)
    leader.page.wait_for_timeout(300)
    for tab in followers:
        expect(tab.toast(lost)).to_have_count(0)
    assert sockets_opened(tabs) == [1, 0, 0]

    leader.page.close()
    for tab in followers:
        expect(tab.toast(lost)).to_be_visible(timeout=5000)
        assert notified(tab.page) == [first, lost]
    new_leader = next(tab for tab in followers if sockets_opened([tab]) == [1])
    assert new_leader.sockets.messages("resume", sent=True)[0]["last_id"] == lost - 1
    assert new_leader.sent("ack") == []  # this browser said "delivered" already
    assert_quiet(followers)


def test_confirming_in_one_tab_drops_the_alert_in_the_others(context: BrowserContext, live_school):
    tabs = tabs_of(live_school, context, 3)
    leader, follower = tabs[0], tabs[1]
    nid = to_student(live_school, "Sign the trip form", require_ack=True)
    for tab in tabs:
        expect(tab.toast(nid)).to_be_visible()

    follower.toast(nid).get_by_role("button", name="Confirm").click()
    for tab in tabs:
        expect(tab.toast(nid)).to_have_count(0)
    # The follower has no socket: its receipt went out on the leader's.
    assert {"type": "ack", "id": nid, "state": "acknowledged"} in leader.sent("ack")
    assert counts(live_school, nid, lambda c: c["acknowledged"] == 1)["acknowledged"] == 1
    for tab in tabs:
        expect(tab.page.locator(f"#inbox-item-{nid}")).to_have_attribute(
            "data-state", "acknowledged"
        )
    assert sockets_opened(tabs) == [1, 0, 0]

    # A tab opened now does not show it again: it is confirmed.
    late = Tab(context).open(live_school.server.url + "/inbox")
    late.page.wait_for_timeout(300)
    expect(late.toast(nid)).to_have_count(0)
    assert_quiet([*tabs, late])


def test_a_tab_opened_later_shows_what_still_awaits_confirmation(
    context: BrowserContext, live_school
):
    tabs = tabs_of(live_school, context, 2)
    nid = to_student(live_school, "Permission slip", require_ack=True)
    for tab in tabs:
        expect(tab.toast(nid)).to_be_visible()

    late = Tab(context).open(live_school.server.url + "/inbox")
    expect(late.toast(nid)).to_be_visible()  # as its own socket's replay would have shown
    assert sockets_opened([late]) == [0]
    assert_quiet([*tabs, late])


def test_without_locks_or_broadcastchannel_each_tab_has_its_own_socket(
    live_school, browser: Browser
):
    shared = tabs_of(live_school, browser.new_context(), 3)
    apart_context = browser.new_context()
    apart_context.add_init_script(NO_SHARING)
    apart = tabs_of(live_school, apart_context, 3)
    assert sockets_opened(shared) == [1, 0, 0]
    assert sockets_opened(apart) == [1, 1, 1]

    nid = to_student(live_school, "Everyone, every tab")
    for tab in shared + apart:
        expect(tab.toast(nid)).to_be_visible()
    assert written_to(live_school, nid) == 1 + 3
    for tab in apart:  # each its own "delivered", and no `tabs`: as before
        tab.sockets.wait_for(lambda tab=tab: tab.sent("ack"), what="delivered")
        assert tab.sent("ack") == [{"type": "ack", "id": nid, "state": "delivered"}]
        assert tab.sent("tabs") == []
    assert_quiet(shared + apart)


def test_two_users_embedded_on_one_origin_keep_apart(
    context: BrowserContext, app, database_url, live_server_factory, other_app
):
    """Another app's pages, one origin, two students signed in with their tokens (one of
    them in two tabs, each page with a fresh token): one socket per user."""
    origin, pages = other_app
    school = build_school(app)
    live = LiveSchool(school, live_server_factory(database_url, ALLOWED_ORIGINS=origin))
    try:
        for n, handle in enumerate(["s7b_1", "s7b_2", "s7b_1"]):
            token = live.api.client_token(school.emails[handle])
            pages[f"/timetable/{n}"] = EMBED_PAGE.format(schoolbell=live.server.url, token=token)
        ann, ben, ann_again = (Tab(context).open(f"{origin}/timetable/{n}") for n in range(3))
        assert sockets_opened([ann, ben, ann_again]) == [1, 1, 0]

        for_ann = live.api.send("For Ann", "Only Ann.", targets={"users": [school.emails["s7b_1"]]})
        for_ben = live.api.send("For Ben", "Only Ben.", targets={"users": [school.emails["s7b_2"]]})
        for tab in (ann, ann_again):
            expect(tab.toast(for_ann["id"])).to_be_visible()
        expect(ben.toast(for_ben["id"])).to_be_visible()
        ben.page.wait_for_timeout(300)
        assert notified(ben.page) == [for_ben["id"]]
        for tab in (ann, ann_again):
            assert notified(tab.page) == [for_ann["id"]]
        assert_quiet([ann, ben, ann_again])
    finally:
        live.close()


def test_someone_else_signing_in_in_another_tab_gets_a_socket_of_their_own(
    context: BrowserContext, live_school
):
    """A shared computer: a student's tab stays open while someone else signs in in
    another tab. That tab must not follow the student's socket."""
    url, school = live_school.server.url, live_school.school
    student, other = tabs_of(live_school, context, 2)
    assert sockets_opened([student, other]) == [1, 0]
    other.page.get_by_role("button", name="Sign out").click()
    sign_in(other.page, url, school.emails["t7b"])
    wait_live(other.page)
    assert sockets_opened([student, other]) == [1, 1]

    for_student = to_student(live_school, "For the student")
    for_teacher = live_school.api.send(
        "For the teacher", "Staff only.", targets={"users": [school.emails["t7b"]]}
    )["id"]
    expect(student.toast(for_student)).to_be_visible()
    expect(other.toast(for_teacher)).to_be_visible()
    other.page.wait_for_timeout(300)
    expect(other.toast(for_student)).to_have_count(0)
    expect(student.toast(for_teacher)).to_have_count(0)
    assert_quiet([student, other])


def test_the_leader_forgets_a_tab_that_stopped_answering(context: BrowserContext, live_school):
    tabs = tabs_of(live_school, context, 3)
    leader = tabs[0]
    leader.sockets.wait_for(lambda: leader.sent("tabs")[-1:] == [{"type": "tabs", "count": 3}])
    # A tab that hangs (or crashed without saying goodbye) answers no roll call.
    tabs[2].page.evaluate("BroadcastChannel.prototype.postMessage = function () {}")
    silent_at = time.monotonic()
    leader.sockets.wait_for(
        lambda: leader.sent("tabs")[-1]["count"] == 2, 20, "the silent tab to be forgotten"
    )
    forgotten_s = time.monotonic() - silent_at
    assert 9 <= forgotten_s <= 15, f"forgotten after {forgotten_s:.1f} s"
    assert_quiet(tabs)
