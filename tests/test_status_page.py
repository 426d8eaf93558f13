"""An announcement's status page: the announcement, live counts and progress, per-class
breakdown, guardian coverage, the filterable recipients table, who may see it, and the
same component over the socket; and, in a real Chromium, a receipt arriving live."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from webapp.db import session_scope, utcnow
from webapp.models import DeliveryState, Notification, Role, User
from webapp.services import classes, notifications, users
from webapp.services import status as status_service
from webapp.services.audience import AudienceSpec, ClassTarget
from webapp.services.receipts import Receipt, record_receipts

from .browser import Sockets, sign_in
from .helpers import session_cookie, signed_in
from .school import build_school
from .wsclient import WSClient

FAMILIES = ("students", "guardians")


@pytest.fixture
def school(app):
    return build_school(app)


def send(
    app,
    school,
    title: str = "Trip tomorrow",
    *,
    by: str = "admin",
    to: tuple[str, ...] = ("7b",),
    parts: tuple[str, ...] = FAMILIES,
    users_: tuple[str, ...] = (),
    **fields,
) -> int:
    """Send through the service as `by`; the new announcement's id."""
    spec = AudienceSpec(
        classes=tuple(ClassTarget(name, frozenset(parts)) for name in to),
        users=tuple(school.emails[h] for h in users_),
    )
    with app.app_context(), session_scope(app) as session:
        draft = notifications.Draft(
            title=title, body=fields.pop("body", "Bring **lunch**."), audience=spec, **fields
        )
        prepared = notifications.prepare(session, session.get(User, school.ids[by]), draft)
        result = notifications.send(session, prepared)
        return result.notification.id


def receipts(app, school, notification_id: int, **states: str) -> None:
    """Record receipts, e.g. receipts(app, school, nid, s7b_1="read")."""
    with app.app_context(), session_scope(app) as session:
        record_receipts(
            session,
            [
                Receipt(school.ids[handle], notification_id, DeliveryState(state), utcnow())
                for handle, state in states.items()
            ],
        )


def in_session(app, work):
    """Run work(session) in a session of its own, committed."""
    with app.app_context(), session_scope(app) as session:
        result = work(session)
        session.commit()
        return result


def component(html: str, root_id: str) -> str:
    """The element with this id, from its opening tag to its own closing </section>."""
    match = re.search(rf'<section id="{re.escape(root_id)}".*?\n</section>', html, re.S)
    assert match, f"no #{root_id}"
    return match.group(0)


def fragment(client, url: str) -> str:
    response = client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def class_row(html: str, name: str, part: str) -> dict[str, int]:
    """The numbers of one per-class row: {'recipients': 3, 'received': 1, ...}."""
    row = re.search(rf'<tr data-class="{name}" data-part="{part}">(.*?)</tr>', html, re.S)
    assert row, f"no row for {part} in {name}"
    return {key: int(n) for key, n in re.findall(r'data-count="(\w+)">(\d+)<', row.group(1))}


def recipient_names(html: str) -> list[str]:
    return re.findall(r'<th scope="row">([^<]+?) <small', html)


# The page -------------------------------------------------------------------------------


def test_the_page_shows_the_announcement_and_its_live_status(app, client, auth, school):
    expires = utcnow() + timedelta(days=2)
    nid = send(
        app,
        school,
        "Trip <b>tomorrow</b>",
        priority="urgent",
        require_ack=True,
        expires_at=expires,
        body="Bring **lunch** <script>alert(1)</script>",
    )
    auth.signin(school.emails["admin"])
    response = client.get(f"/notifications/{nid}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)

    assert '<h1 id="notification-title">Trip &lt;b&gt;tomorrow&lt;/b&gt;</h1>' in page
    assert "<strong>lunch</strong>" in page and "<script>alert" not in page
    assert '<dd data-fact="priority">Urgent</dd>' in page
    assert '<dd data-fact="require-ack">Yes</dd>' in page
    assert '<dd data-fact="author">ADMIN</dd>' in page
    assert expires.strftime("%d %b %Y, %H:%M UTC") in page
    assert f'hx-ext="ws" ws-connect="/ws?watch=notification:{nid}"' in page
    status = component(page, f"delivery-status-{nid}")
    assert '<dd data-state="pending">6</dd>' in status
    assert '<dd data-state="read">0</dd>' in status
    for bar in ("received", "read", "confirmed"):
        assert re.search(rf'<progress id="progress-{nid}-{bar}" max="6" value="0">', status)
        assert f'<label for="progress-{nid}-{bar}">' in status
    assert "<caption>By class (current members)</caption>" in status
    assert class_row(status, "7b", "students") == {
        "recipients": 3,
        "received": 0,
        "read": 0,
        "confirmed": 0,
    }
    assert "0 of 3 students have a guardian who read it" in status
    table = component(page, "recipients-table")
    assert len(recipient_names(table)) == 6
    assert '<option value="unconfirmed">Not confirmed yet</option>' in page
    for label in ("Show", "Search by name or email"):
        assert re.search(rf"<label for=\"recipients-[a-z]+\">{label}</label>", page)
    assert " style=" not in page and "<script>" not in page.replace("<script src=", "")


def test_without_confirmation_there_is_no_confirmed_bar_nor_filter(app, client, auth, school):
    nid = send(app, school)
    auth.signin(school.emails["admin"])
    page = client.get(f"/notifications/{nid}").get_data(as_text=True)
    assert f'id="progress-{nid}-received"' in page and f'id="progress-{nid}-read"' in page
    assert f'id="progress-{nid}-confirmed"' not in page
    assert 'value="unconfirmed"' not in page
    assert '<dd data-fact="expires">Never</dd>' in page


def test_counts_progress_classes_and_coverage_follow_the_receipts(app, client, auth, school):
    def setup(session):  # G7B_1 also guards S7B_3: one guardian for two students
        guardian, student = (session.get(User, school.ids[h]) for h in ("g7b_1", "s7b_3"))
        classes.ensure_guardianship(session, guardian, student)

    in_session(app, setup)
    nid = send(
        app, school, to=("7b", "7a"), parts=("students", "guardians", "teachers"), require_ack=True
    )
    receipts(
        app,
        school,
        nid,
        s7b_1="read",
        s7b_2="delivered",
        g7b_1="acknowledged",
        g7b_2="delivered",
        s7a_1="acknowledged",
    )
    auth.signin(school.emails["admin"])
    status = fragment(client, f"/notifications/{nid}/status")

    assert status.startswith(f'<section id="delivery-status-{nid}"')
    assert status.rstrip().endswith("</section>")
    # 7a and 7b: 3 students + 3 guardians + 1 teacher each.
    for state, n in {"pending": 9, "delivered": 2, "read": 1, "acknowledged": 2}.items():
        assert f'<dd data-state="{state}">{n}</dd>' in status
    assert f'id="progress-{nid}-received" max="14" value="5">36%</progress>' in status
    assert f'id="progress-{nid}-read" max="14" value="3">' in status
    assert f'id="progress-{nid}-confirmed" max="14" value="2">' in status
    assert "5 of 14 (36%)" in status
    assert class_row(status, "7b", "students") == {
        "recipients": 3,
        "received": 2,
        "read": 1,
        "confirmed": 0,
    }
    assert class_row(status, "7b", "guardians") == {  # G7B_1 once, though guarding two
        "recipients": 3,
        "received": 2,
        "read": 1,
        "confirmed": 1,
    }
    assert class_row(status, "7b", "teachers") == {
        "recipients": 1,
        "received": 0,
        "read": 0,
        "confirmed": 0,
    }
    assert class_row(status, "7a", "students") == {
        "recipients": 3,
        "received": 1,
        "read": 1,
        "confirmed": 1,
    }
    assert status.index('data-class="7a"') < status.index('data-class="7b"')
    # S7B_1 and S7B_3 have G7B_1, who confirmed; G7B_2 only received it.
    assert re.search(
        r'data-coverage="7b"><strong>7b:</strong>\s*2 of 3 students have a '
        r"guardian who read it",
        status,
    )
    assert re.search(r'data-coverage="7a"><strong>7a:</strong>\s*0 of 3 students', status)


def test_class_rows_count_current_members_only(app, client, auth, school):
    nid = send(app, school, parts=("students",))
    receipts(app, school, nid, s7b_3="read")

    def leave(session):
        admin = session.get(User, school.ids["admin"])
        school_class = classes.get_by_name(session, "7b")
        classes.remove_member(session, admin, school_class.id, school.ids["s7b_3"])

    in_session(app, leave)
    auth.signin(school.emails["admin"])
    status = fragment(client, f"/notifications/{nid}/status")
    assert class_row(status, "7b", "students") == {"recipients": 2, "received": 0, "read": 0}
    assert '<dd data-state="read">1</dd>' in status  # the totals keep every recipient


def test_a_student_without_a_guardian_is_not_covered(app, client, auth, school, make_user):
    lonely = make_user("student", name="Lonely Pupil")
    in_session(
        app,
        lambda session: classes.ensure_member(
            session, classes.get_by_name(session, "7b"), session.get(User, lonely.id)
        ),
    )
    nid = send(app, school)
    receipts(app, school, nid, g7b_1="read", g7b_2="read", g7b_3="read")
    auth.signin(school.emails["admin"])
    status = fragment(client, f"/notifications/{nid}/status")
    assert "3 of 4 students have a guardian who read it" in status
    assert "(1 without a guardian among the recipients)" in status


def test_the_push_is_the_same_component_as_the_page_and_fragment(live_school):
    """What the socket really pushes, byte for byte what the fragment endpoint returns
    and what the page includes (a push rendered differently, e.g. with request-bound
    globals missing, would fail here)."""
    nid = live_school.api.send(
        "Trip", targets={"classes": [{"name": "7b", "audience": list(FAMILIES)}]}, require_ack=True
    )["id"]
    url = live_school.server.url
    browser = signed_in(url, live_school.school.emails["admin"])
    dashboard = WSClient(
        url, cookie=session_cookie(browser), origin=url, query=f"watch=notification:{nid}"
    )
    first = dashboard.connect().recv()
    assert f'id="delivery-status-{nid}"' in first and 'data-state="read">0<' in first

    tab = live_school.tab("s7b_1")
    tab.ack(tab.expect("notification")["id"], "read")
    pushed = dashboard.recv(timeout=5)

    assert 'data-state="read">1<' in pushed and 'data-state="pending">5<' in pushed
    status, _, endpoint = browser.request(f"/notifications/{nid}/status")
    assert status == 200 and endpoint == pushed
    status, _, page = browser.request(f"/notifications/{nid}")
    assert status == 200 and pushed.strip() in page


def test_the_service_on_both_backends_in_a_few_queries(any_database_url, tmp_path):
    from sqlalchemy import event

    from .conftest import make_test_app

    app = make_test_app(any_database_url, tmp_path)
    school = build_school(app)
    nid = send(
        app, school, to=("7a", "7b"), parts=("students", "guardians", "teachers"), require_ack=True
    )
    receipts(app, school, nid, s7b_1="read", g7b_1="acknowledged", t7a="delivered")
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    with app.app_context(), session_scope(app) as session:
        notification = session.get(Notification, nid)
        event.listen(session.get_bind(), "before_cursor_execute", count)
        try:
            report = status_service.status_report(session, notification)
            recipients = status_service.recipients_page(
                session, notification, state="unconfirmed", query="7B_"
            )
        finally:
            event.remove(session.get_bind(), "before_cursor_execute", count)
    app.extensions["schoolbell.db"].kw["bind"].dispose()

    P = status_service.Progress
    assert report.counts == {"pending": 11, "delivered": 1, "read": 1, "acknowledged": 1}
    assert report.progress == P(total=14, received=3, read=2, confirmed=1)
    assert [c.name for c in report.classes] == ["7a", "7b"]
    seventh_a, seventh_b = report.classes
    assert seventh_a.parts == [("students", P(3)), ("guardians", P(3)), ("teachers", P(1, 1, 0, 0))]
    assert seventh_b.parts == [
        ("students", P(3, 1, 1, 0)),
        ("guardians", P(3, 1, 1, 1)),
        ("teachers", P(1)),
    ]
    assert seventh_a.coverage == status_service.Coverage(students=3, covered=0, unreached=0)
    assert seventh_b.coverage == status_service.Coverage(students=3, covered=1, unreached=0)
    assert [u.name for _, u, _ in recipients.rows] == ["G7B_2", "G7B_3", "S7B_1", "S7B_2", "S7B_3"]
    assert recipients.rows[0][2] == ["7b"]
    # counts, targets, members, guardians, coverage; then count, rows, class names
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 8


# The recipients table -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "q", "shown"),
    [
        ("", "", ["G7B_1", "G7B_2", "G7B_3", "S7B_1", "S7B_2", "S7B_3"]),
        ("all", "", ["G7B_1", "G7B_2", "G7B_3", "S7B_1", "S7B_2", "S7B_3"]),
        ("pending", "", ["G7B_3", "S7B_3"]),
        ("delivered", "", ["S7B_2"]),
        ("read", "", ["G7B_2", "S7B_1"]),
        ("acknowledged", "", ["G7B_1"]),
        ("unconfirmed", "", ["G7B_2", "G7B_3", "S7B_1", "S7B_2", "S7B_3"]),
        ("", "s7b", ["S7B_1", "S7B_2", "S7B_3"]),
        ("", "g7b_2@school", ["G7B_2"]),
        ("unconfirmed", "G7B", ["G7B_2", "G7B_3"]),
        ("", "%", []),
    ],
)
def test_the_recipients_table_filters_by_state_and_search(
    app, client, auth, school, state, q, shown
):
    nid = send(app, school, require_ack=True)
    receipts(app, school, nid, s7b_1="read", s7b_2="delivered", g7b_1="acknowledged", g7b_2="read")
    auth.signin(school.emails["admin"])
    html = fragment(client, f"/notifications/{nid}/recipients?state={state}&q={q}")
    assert html.startswith('<section id="recipients-table"')
    assert html.rstrip().endswith("</section>") and html.count("<section") == 1
    assert recipient_names(html) == shown
    assert f'data-total="{len(shown)}"' in html
    if not shown:
        assert "Nobody matches." in html


def test_a_row_shows_role_classes_state_and_times(app, client, auth, school):
    nid = send(app, school, require_ack=True)
    receipts(app, school, nid, g7b_1="acknowledged")
    auth.signin(school.emails["admin"])
    html = fragment(client, f"/notifications/{nid}/recipients?q=g7b_1")
    row = re.search(
        rf'<tr id="recipient-{school.ids["g7b_1"]}" data-state="acknowledged">'
        r"(.*?)</tr>",
        html,
        re.S,
    ).group(1)
    assert '<span class="badge role-guardian">guardian</span>' in row
    assert '<td class="optional">7b</td>' in row  # a guardian's class: their student's
    assert "confirmed</span>" in row
    assert row.count("<time datetime=") == 3  # delivered, read and confirmed: filled in


def test_the_page_applies_the_filters_too(app, client, auth, school):
    nid = send(app, school)
    receipts(app, school, nid, s7b_1="read")
    auth.signin(school.emails["admin"])
    page = client.get(f"/notifications/{nid}?state=read&q=s7b").get_data(as_text=True)
    assert recipient_names(component(page, "recipients-table")) == ["S7B_1"]
    assert '<option value="read" selected>' in page
    assert 'name="q" value="s7b"' in page


def test_the_recipients_table_refreshes_itself_with_its_filters(app, client, auth, school):
    nid = send(app, school)
    auth.signin(school.emails["admin"])
    html = fragment(client, f"/notifications/{nid}/recipients?state=pending&q=s7b")
    assert f'hx-get="/notifications/{nid}/recipients?state=pending&amp;q=s7b"' in html
    assert 'hx-trigger="htmx:wsAfterMessage from:body delay:200ms"' in html
    assert 'hx-swap="outerHTML"' in html


def test_an_unknown_state_filter_is_a_clear_400(app, client, auth, school):
    nid = send(app, school)
    auth.signin(school.emails["admin"])
    response = client.get(f"/notifications/{nid}/recipients?state=lost")
    assert response.status_code == 400
    assert "state must be all, pending" in response.get_data(as_text=True)


def test_the_recipients_table_is_paginated_by_100(app, client, auth, school):
    def pupils(session):
        for n in range(1, 106):
            users.create(
                session,
                None,
                users.UserInput(
                    email=f"pupil{n:03}@school.test", name=f"Pupil {n:03}", role="student"
                ),
            )

    in_session(app, pupils)
    with app.app_context(), session_scope(app) as session:
        admin = session.get(User, school.ids["admin"])
        draft = notifications.Draft(
            title="All pupils", body="Hi", audience=AudienceSpec(roles=(Role.STUDENT,))
        )
        result = notifications.send(session, notifications.prepare(session, admin, draft))
        nid = result.notification.id
    auth.signin(school.emails["admin"])
    base = f"/notifications/{nid}/recipients"

    first = fragment(client, base + "?q=pupil")
    assert recipient_names(first)[:2] == ["Pupil 001", "Pupil 002"]
    assert len(recipient_names(first)) == 100
    assert "Page 1 of 2" in first and 'rel="prev"' not in first
    assert f'hx-get="{base}?page=2&amp;q=pupil"' in first
    assert f'href="/notifications/{nid}?page=2&amp;q=pupil" rel="next"' in first

    second = fragment(client, base + "?q=pupil&page=2")
    assert recipient_names(second) == [f"Pupil {n}" for n in range(101, 106)]
    assert "Page 2 of 2" in second and 'rel="next"' not in second
    assert recipient_names(fragment(client, base + "?q=pupil&page=99")) == recipient_names(
        second
    )  # past the end: the last page
    few = fragment(client, base + "?q=pupil 10")  # Pupil 100 to 105: one page, no links
    assert len(recipient_names(few)) == 6 and 'class="pagination"' not in few


# Who may see it -------------------------------------------------------------------------


@pytest.fixture
def people(app, school, make_user):
    """Handles with passwords beyond the school's: a teacher of 7a, a guardian of S7B_1."""
    t7a = make_user("teacher", name="Other Teacher")
    guardian = make_user("guardian", name="Signed-in Guardian")

    def link(session):
        classes.ensure_member(
            session, classes.get_by_name(session, "7a"), session.get(User, t7a.id)
        )
        classes.ensure_guardianship(
            session, session.get(User, guardian.id), session.get(User, school.ids["s7b_1"])
        )

    in_session(app, link)
    return {
        "admin": school.emails["admin"],
        "t7b": school.emails["t7b"],
        "s7b_1": school.emails["s7b_1"],
        "t7a": t7a.email,
        "guardian": guardian.email,
    }


PAGES = ["/notifications/{id}", "/notifications/{id}/status", "/notifications/{id}/recipients"]


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("admin", 200),
        ("t7b", 200),  # an admin; the teacher of a targeted class
        ("t7a", 404),  # a teacher of another class: as if it did not exist
        ("s7b_1", 403),
        ("guardian", 403),  # recipients, but not staff: no dashboard at all
    ],
)
def test_who_may_see_an_announcements_status(app, client, auth, school, people, who, status):
    nid = send(app, school)  # by the admin, to 7b
    auth.signin(people[who])
    for url in PAGES:
        assert client.get(url.format(id=nid)).status_code == status, url
        # An id that does not exist answers as one the viewer may not see.
        missing = client.get(url.format(id=nid + 1000)).status_code
        assert missing == (404 if status == 200 else status), url


def test_the_author_sees_it_without_a_class_target(app, client, auth, school, people):
    nid = send(app, school, by="t7b", to=(), users_=("s7b_1",))
    auth.signin(people["t7b"])
    page = client.get(f"/notifications/{nid}").get_data(as_text=True)
    assert "By class" not in page and '<dd data-fact="author">T7B</dd>' in page
    auth.signout()
    auth.signin(people["t7a"])
    assert client.get(f"/notifications/{nid}").status_code == 404


def test_anonymous_visitors_are_sent_to_sign_in(app, client, school):
    nid = send(app, school)
    for url in PAGES:
        response = client.get(url.format(id=nid))
        assert response.status_code == 302, url
        assert urlsplit(response.headers["Location"]).path == "/signin", url


# In a real browser ----------------------------------------------------------------------


@pytest.mark.browser
def test_a_receipt_arrives_on_the_status_page_without_reloading(
    page: Page, live_school, artifacts, console_errors
):
    nid = live_school.api.send(
        "Swimming on Friday",
        "Bring a **towel**.",
        targets={"classes": [{"name": "7b", "audience": list(FAMILIES)}]},
        require_ack=True,
    )["id"]
    url = live_school.server.url
    sockets = Sockets(page)
    sign_in(page, url, live_school.school.emails["admin"])
    page.goto(f"{url}/notifications/{nid}")
    expect(page.get_by_role("heading", name="Swimming on Friday")).to_be_visible()
    status = page.locator(f"#delivery-status-{nid}")
    read = status.locator('dd[data-state="read"]')
    expect(read).to_have_text("0")
    student_row = page.locator(f"#recipients-table #recipient-{live_school.school.ids['s7b_1']}")
    expect(student_row).to_have_attribute("data-state", "pending")
    # The page's watch socket got its first fragment: the socket is live.
    sockets.wait_for(
        lambda: any("watch=notification" in ws.url for ws in sockets.opened),
        what="the status socket",
    )
    page.evaluate("window.__sameDocument = true")

    tab = live_school.tab("s7b_1")
    tab.ack(tab.expect("notification")["id"], "read")

    expect(read).to_have_text("1", timeout=10_000)
    expect(page.locator(f"#progress-{nid}-read")).to_have_attribute("value", "1")
    expect(student_row).to_have_attribute("data-state", "read", timeout=10_000)
    expect(student_row).to_contain_text("read")

    # The filter narrows the table as one types, without reloading either.
    page.get_by_label("Show", exact=True).select_option("unconfirmed")
    page.get_by_label("Search by name or email").fill("s7b")
    expect(page.locator("#recipients-table tbody tr")).to_have_count(3)
    page.screenshot(path=artifacts / "status-page.png", full_page=True)
    assert page.evaluate("window.__sameDocument") is True
    assert console_errors == []


@pytest.mark.parametrize("smtp_url", ["", "smtp://127.0.0.1:2525"])
def test_the_status_shows_how_recipients_were_reached_and_whether_email_is_on(
    app, client, auth, school, smtp_url
):
    from webapp.models import Channel

    app.config["SMTP_URL"] = smtp_url
    nid = send(app, school)
    with app.app_context(), session_scope(app) as session:
        record_receipts(
            session,
            [
                Receipt(school.ids["s7b_1"], nid, DeliveryState.DELIVERED, utcnow()),
                Receipt(school.ids["g7b_1"], nid, DeliveryState.READ, utcnow(), Channel.PUSH),
            ],
        )
    auth.signin(school.emails["admin"])
    status = component(
        client.get(f"/notifications/{nid}").get_data(as_text=True), f"delivery-status-{nid}"
    )
    for key, n in (("tab", 1), ("push", 1), ("email", 0), ("not_yet", 4)):
        assert f'<dd data-channel="{key}">{n}</dd>' in status
    assert ('data-channel-note="email-off"' in status) is (not smtp_url)
    row = fragment(client, f"/notifications/{nid}/recipients?q=g7b_1")
    assert '<td data-channel="push">Push</td>' in row
    body = client.get(f"/api/v1/notifications/{nid}").get_json()
    assert body["channels"] == {
        "tab": 1,
        "push": 1,
        "email": 0,
        "not_yet": 4,
        "pushed": 0,
        "emailed": 0,
    }
    rows = client.get(f"/api/v1/notifications/{nid}/deliveries").get_json()["deliveries"]
    assert {r["user"]["email"]: r["channel"] for r in rows}[school.emails["g7b_1"]] == "push"
