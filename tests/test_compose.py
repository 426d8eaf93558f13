"""The compose page: preview, recipient count, people picker, send, confirmation, drafts."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from webapp.db import get_session
from webapp.models import Delivery, Notification
from webapp.services import audience

from .conftest import PASSWORD
from .helpers import csrf_token_from, post_form
from .school import build_school


@pytest.fixture
def school(app):
    return build_school(app)


@pytest.fixture
def signed_in(client, school):
    """Sign in as a handle of the school (admin, t7b, s7b_1 have passwords)."""

    def sign_in(handle: str):
        post_form(client, "/signin", {"email": school.emails[handle], "password": PASSWORD})
        return (
            csrf_token_from(client.get("/dashboard").get_data(as_text=True))
            if handle != "s7b_1"
            else None
        )

    return sign_in


def preview(client, token, **fields):
    data = {"title": "Hello", "body": "Body", "priority": "normal", **fields}
    response = client.post(
        "/notifications/preview", data=data, headers={"X-CSRFToken": token, "HX-Request": "true"}
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


def alert_in(html: str) -> dict:
    """The alert data the preview carries for schoolbell.js to render (#alert-preview)."""
    attribute = re.search(r"<div id=\"alert-preview\"[^>]*\sdata-alert='([^']*)'", html)
    assert attribute, html
    return json.loads(attribute.group(1))


def count_rows(app, model) -> int:
    with app.app_context():
        return get_session().scalar(select(func.count()).select_from(model))


def test_the_page_has_every_labelled_control(client, signed_in):
    signed_in("admin")
    page = client.get("/notifications/new").get_data(as_text=True)
    for label in ("Title", "Message", "Priority", "Requires confirmation", "Add people"):
        assert re.search(rf"<label[^>]*>(<input[^>]*>)?\s*{label}", page), label
    assert "<legend>Recipients</legend>" in page
    assert '<button type="submit" class="primary" id="send">Send</button>' in page
    assert 'id="alert-preview"' in page and 'id="recipient-count"' in page
    assert alert_in(page)["title"] == "(no title yet)"


def test_preview_renders_the_alert_and_counts_the_audience(client, signed_in):
    token = signed_in("admin")
    html = preview(
        client,
        token,
        title="Trip <b>x</b>",
        body="Bring **lunch**",
        priority="urgent",
        **{"class:7b": ["students", "guardians"]},
    )
    assert html.lstrip().startswith('<div id="alert-preview"')
    assert alert_in(html) == {
        "title": "Trip <b>x</b>",  # plain text: schoolbell.js sets it as textContent
        "body_html": "<p>Bring <strong>lunch</strong></p>",
        "priority": "urgent",
        "require_ack": False,
        "drill": False,
        "author": "ADMIN",
        "link": None,
    }
    assert "<b>" not in html  # no markup from the title reaches the page
    assert 'id="recipient-count" class="recipient-count" hx-swap-oob="true"' in html
    assert 'data-recipient-count="6"' in html
    assert "<li>3 students in 7b</li><li>3 guardians in 7b</li>" in html


def test_preview_sanitises_exactly_like_the_inbox(app, client, signed_in):
    from webapp.markup import render_markdown

    token = signed_in("admin")
    body = "Hi <script>alert(1)</script> [x](javascript:alert(2)) <img src=x onerror=y>"
    html = preview(client, token, body=body)
    body_html = alert_in(html)["body_html"]
    assert body_html == render_markdown(body)
    assert "<script" not in body_html and "javascript:" not in body_html
    assert "onerror" not in body_html
    assert "<script" not in html and "<img" not in html  # nor anything from the attribute


@pytest.mark.parametrize(
    ("priority", "require_ack", "hint"),
    [
        ("normal", "", None),
        ("urgent", "1", None),
        ("emergency", "", "Emergencies cover the whole screen until read."),
        ("emergency", "1", "Emergencies cover the whole screen until confirmed."),
    ],
)
def test_preview_carries_priority_and_confirmation(client, signed_in, priority, require_ack, hint):
    token = signed_in("admin")
    html = preview(client, token, priority=priority, require_ack=require_ack)
    alert = alert_in(html)
    assert (alert["priority"], alert["require_ack"]) == (priority, require_ack == "1")
    assert ("Emergencies cover the whole screen" in html) == (hint is not None)
    if hint:
        assert hint in html


def test_an_untitled_preview_says_so(client, signed_in):
    token = signed_in("admin")
    assert alert_in(preview(client, token, title="  "))["title"] == "(no title yet)"


def test_preview_counts_people_reached_twice_once(client, signed_in, school):
    token = signed_in("admin")
    html = preview(client, token, user=[school.emails["s7b_1"]], **{"class:7b": ["students"]})
    assert 'data-recipient-count="3"' in html
    assert "People reached twice get it once." in html


def test_preview_says_what_is_wrong_with_the_audience(client, signed_in):
    token = signed_in("t7b")
    html = preview(client, token, **{"class:7a": ["students"]})
    assert "You can only send to your own classes, not 7a." in html
    assert "data-recipient-count" not in html


def test_preview_without_recipients_asks_for_them(client, signed_in):
    token = signed_in("admin")
    assert "Choose who should get it." in preview(client, token)


def test_teachers_are_offered_only_their_own_classes(client, signed_in):
    signed_in("t7b")
    page = client.get("/notifications/new").get_data(as_text=True)
    assert 'name="class:7b"' in page
    assert 'name="class:7a"' not in page
    assert 'name="role"' not in page and 'name="everyone"' not in page


def test_admins_are_offered_every_class_role_and_the_school(client, signed_in):
    signed_in("admin")
    page = client.get("/notifications/new").get_data(as_text=True)
    assert 'name="class:7a"' in page and 'name="class:7b"' in page
    assert 'value="guardian"' in page and 'name="everyone"' in page


def test_people_picker_searches_only_within_reach(client, signed_in, school):
    signed_in("t7b")
    html = client.get("/notifications/people?q=s7").get_data(as_text=True)
    assert html.lstrip().startswith('<ul id="people-results"')
    assert school.emails["s7b_1"] in html
    assert school.emails["s7a_1"] not in html
    assert "gone@" not in client.get("/notifications/people?q=gone").get_data(as_text=True)


def test_people_picker_takes_wildcards_literally(client, signed_in):
    signed_in("admin")
    html = client.get("/notifications/people?q=%25").get_data(as_text=True)
    assert "data-add-person" not in html
    assert "Nobody you can reach matches" in html


def test_a_teacher_cannot_send_to_another_class(app, client, signed_in):
    token = signed_in("t7b")
    response = client.post(
        "/notifications",
        data={"csrf_token": token, "title": "Sneaky", "body": "x", "class:7a": "students"},
    )
    assert response.status_code == 403
    assert "You can only send to your own classes" in response.get_data(as_text=True)
    assert count_rows(app, Notification) == 0


def test_students_cannot_compose(client, signed_in):
    signed_in("s7b_1")
    assert client.get("/notifications/new").status_code == 403


def test_send_goes_to_the_status_page(app, client, signed_in):
    token = signed_in("t7b")
    response = client.post(
        "/notifications",
        data={
            "csrf_token": token,
            "title": "Homework",
            "body": "Page 12",
            "class:7b": ["students", "guardians"],
            "key": "k-1",
        },
    )
    assert response.status_code == 302
    assert re.fullmatch(r"/notifications/\d+", response.headers["Location"])
    assert count_rows(app, Delivery) == 6


def test_a_double_submit_sends_once(app, client, signed_in):
    token = signed_in("t7b")
    data = {
        "csrf_token": token,
        "title": "Once",
        "body": "x",
        "class:7b": "students",
        "key": "same-page",
    }
    first, second = (
        client.post("/notifications", data=data),
        client.post("/notifications", data=data),
    )
    assert first.headers["Location"] == second.headers["Location"]
    assert count_rows(app, Notification) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"title": "", "body": "x"}, "A title is required."),
        ({"title": "x", "body": "   "}, "A message is required."),
        ({"title": "x", "body": "y" * 20_001}, "Messages are at most 20000 characters"),
        ({"title": "x", "body": "y", "expires_at": "yesterday"}, "not a valid date and time"),
        ({"title": "x", "body": "y", "expires_at": "2020-01-01T08:00"}, "must be in the future"),
    ],
)
def test_bad_drafts_are_shown_again_with_a_message(app, client, signed_in, fields, message):
    token = signed_in("admin")
    response = client.post(
        "/notifications", data={"csrf_token": token, "class:7b": "students", **fields}
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in page
    assert 'name="class:7b" value="students" checked' in page  # the draft is kept
    assert count_rows(app, Notification) == 0


def test_an_empty_audience_is_refused(app, client, signed_in):
    token = signed_in("admin")
    response = client.post("/notifications", data={"csrf_token": token, "title": "x", "body": "y"})
    assert response.status_code == 400
    assert "Choose at least one recipient." in response.get_data(as_text=True)


def test_an_expired_token_keeps_the_draft(app, client, signed_in, school):
    signed_in("admin")
    response = client.post(
        "/notifications",
        data={
            "csrf_token": "stale",
            "title": "Long compose",
            "body": "Many words",
            "class:7b": "guardians",
            "user": school.emails["t7a"],
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "security token expired, so nothing was sent" in page
    assert 'value="Long compose"' in page and ">Many words</textarea>" in page
    assert 'name="class:7b" value="guardians" checked' in page
    assert f'<input type="hidden" name="user" value="{school.emails["t7a"]}">T7A' in page
    assert count_rows(app, Notification) == 0
    token = csrf_token_from(page)  # the page that came back can send
    again = client.post(
        "/notifications",
        data={
            "csrf_token": token,
            "title": "Long compose",
            "body": "Many words",
            "class:7b": "guardians",
        },
    )
    assert again.status_code == 302


def test_emergencies_ask_before_sending(app, client, signed_in):
    token = signed_in("admin")
    data = {
        "csrf_token": token,
        "title": "Lockdown",
        "body": "Stay inside",
        "priority": "emergency",
        "require_ack": "1",
        "class:7b": "students",
        "key": "e1",
    }
    asked = client.post("/notifications", data=data)
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200
    assert "Send this emergency alert to 3 people?" in page
    assert count_rows(app, Notification) == 0
    sent = client.post("/notifications", data={**data, "confirmed": "1"})
    assert sent.status_code == 302
    assert count_rows(app, Notification) == 1


def test_big_audiences_ask_before_sending(app, client, signed_in):
    app.config["CONFIRM_RECIPIENTS_ABOVE"] = 5
    token = signed_in("admin")
    data = {"csrf_token": token, "title": "All", "body": "x", "everyone": "1"}
    page = client.post("/notifications", data=data).get_data(as_text=True)
    assert re.search(r"Send this announcement to \d+ people\?", page)
    assert count_rows(app, Notification) == 0
    small = client.post(
        "/notifications",
        data={"csrf_token": token, "title": "Few", "body": "x", "user": "t7a@school.test"},
    )
    assert small.status_code == 302  # at or under the limit: no question asked


def test_each_send_reads_its_audience_once(app, client, signed_in, monkeypatch):
    """The "are you sure?" question and the send share one resolved audience: one
    resolve per request, whether it asks, sends after asking, or sends straight away."""
    real_resolve, resolved = audience.resolve, []

    def counted(session, actor, spec):
        resolved.append(spec)
        return real_resolve(session, actor, spec)

    monkeypatch.setattr(audience, "resolve", counted)
    token = signed_in("admin")
    alert = {
        "csrf_token": token,
        "title": "Lockdown",
        "body": "Stay inside",
        "priority": "emergency",
        "class:7b": "students",
        "key": "e2",
    }
    assert client.post("/notifications", data=alert).status_code == 200  # asks
    assert len(resolved) == 1
    assert client.post("/notifications", data={**alert, "confirmed": "1"}).status_code == 302
    assert len(resolved) == 2
    notice = {"csrf_token": token, "title": "Notice", "body": "x", "class:7b": "students"}
    assert client.post("/notifications", data=notice).status_code == 302  # nothing to ask
    assert len(resolved) == 3
    assert count_rows(app, Notification) == 2


def test_expiry_is_read_in_the_schools_time_zone(app, client, signed_in):
    app.config["TIMEZONE"] = "Europe/Berlin"
    token = signed_in("admin")
    client.post(
        "/notifications",
        data={
            "csrf_token": token,
            "title": "x",
            "body": "y",
            "class:7b": "students",
            "expires_at": "2099-07-01T10:00",
        },
    )
    with app.app_context():
        expires = get_session().scalar(select(Notification.expires_at))
    assert expires.isoformat() == "2099-07-01T08:00:00+00:00"


# Emergencies: templates and drills ------------------------------------------------------


def test_staff_start_an_emergency_from_a_template_and_preview_a_drill(client, signed_in):
    token = signed_in("t7b")
    page = client.get("/notifications/new").get_data(as_text=True)
    buttons = re.findall(r'data-emergency-template="([a-z_]+)"', page)

    assert buttons == ["lockdown", "evacuation", "shelter"]  # the all clear is no emergency
    assert 'data-title="Evacuation: leave the building now"' in page
    assert "Edit templates" not in page  # teachers use them; admins edit them
    assert re.search(
        r'<label class="checkbox drill-field" for="drill" id="drill-field" hidden>', page
    )
    assert alert_in(preview(client, token, priority="emergency", drill="1"))["drill"] is True
    assert alert_in(preview(client, token, priority="urgent", drill="1"))["drill"] is False


def test_admins_edit_the_templates_through_a_form(client, signed_in):
    signed_in("admin")
    assert "Edit templates" in client.get("/notifications/new").get_data(as_text=True)
    fields = {"name": "Lockdown", "title": "Lockdown: doors shut", "body": "Lock **now**."}

    saved = post_form(client, "/emergency-templates/lockdown", fields, page="/emergency-templates")
    refused = post_form(
        client,
        "/emergency-templates/lockdown",
        {**fields, "title": ""},
        page="/emergency-templates",
    )
    no_token = client.post("/emergency-templates/lockdown", data=fields)

    assert saved.status_code == 302
    assert refused.status_code == 400 and "title" in refused.get_data(as_text=True).lower()
    assert no_token.status_code == 400  # CSRF
    compose = client.get("/notifications/new").get_data(as_text=True)
    assert 'data-title="Lockdown: doors shut"' in compose and "Lock **now**." in compose
