"""Deadlines, reminders and quiet hours on a real server: reminders reach only those who
have not confirmed, through their open tabs, their devices (the push stand-in decrypts
them) and e-mail (the SMTP stand-in); "remind now" from the API and the status page;
the sender's e-mail and CSV at the deadline; quiet hours hold a normal push and e-mail
but not an emergency."""

from __future__ import annotations

import csv
import io
import time
from datetime import timedelta

from sqlalchemy import select

from webapp.db import session_scope, utcnow
from webapp.models import Job, JobState

from .helpers import csrf_token_from, signed_in, wait_for
from .school import LiveSchool, build_school
from .test_reach_live import pushes, reach_env, subscribe

TO_7B = {"classes": [{"name": "7b", "audience": ["students"]}]}


def start(app, database_url, live_server_factory, push_service, smtp, **extra) -> LiveSchool:
    """The school behind a server whose pushes and e-mails go to the stand-ins. Tests
    take `live_server_factory` after `smtp`, so the server stops before the stand-ins
    (nothing is left mid-conversation with them)."""
    school = build_school(app)
    env = reach_env(push_service, smtp, PUBLIC_URL="http://school.test", **extra)
    return LiveSchool(school, live_server_factory(database_url, **env))


def iso(seconds: float) -> str:
    return (utcnow() + timedelta(seconds=seconds)).isoformat()


def to(smtp, email: str) -> list:
    return [m for m in smtp.messages if email in str(m["To"])]


def test_reminders_reach_only_those_who_have_not_confirmed_on_every_channel(
    app, database_url, push_service, smtp, live_server_factory
):
    live = start(app, database_url, live_server_factory, push_service, smtp)
    emails = live.school.emails
    for handle in ("s7b_1", "s7b_2"):
        subscribe(live, push_service, handle)
    confirmed, waiting = live.tab("s7b_1", resume=0), live.tab("s7b_2", resume=0)
    nid = live.api.send(
        "Permission slip", "Sign it", targets=TO_7B, confirm_by=iso(3600), remind_at=[iso(8)]
    )["id"]
    for tab in (confirmed, waiting):
        tab.ack(tab.expect("notification")["id"], "delivered")
    confirmed.ack(nid, "acknowledged")
    wait_for(lambda: live.api.call("GET", f"/notifications/{nid}")[1]["counts"]["acknowledged"])
    # The scheduled reminder comes at its time, to the one who has not confirmed.
    reminder = waiting.expect("notification", timeout=20)
    assert reminder["id"] == nid and reminder["reminder"] is True
    assert confirmed.nothing_within(1)
    wait_for(
        lambda: any(
            p.message["title"].startswith("Reminder: ") for p in pushes(push_service, "s7b_2")
        ),
        timeout=10,
    )
    assert not any(p.message["title"].startswith("Reminder") for p in pushes(push_service, "s7b_1"))
    wait_for(lambda: to(smtp, emails["s7b_3"]), timeout=10)  # no tab, no device: e-mail
    (mail,) = [m for m in to(smtp, emails["s7b_3"]) if "Reminder: " in m["Subject"]]
    text = mail.get_body(("plain",)).get_content()
    assert "please confirm it by" in text and "/l/confirm/" in text
    assert not [m for m in to(smtp, emails["s7b_1"]) if "Reminder" in m["Subject"]]

    # Remind now: again only the unconfirmed; a second click right after is refused.
    status, body = live.api.call("POST", f"/notifications/{nid}/remind")
    assert status == 429 and body["error"]["code"] == "reminded_recently"


def test_remind_now_from_the_api_and_its_refusals(
    app, database_url, push_service, smtp, live_server_factory
):
    live = start(app, database_url, live_server_factory, push_service, smtp)
    tab = live.tab("s7b_1", resume=0)
    nid = live.api.send("Form", "Sign it", targets=TO_7B, require_ack=True)["id"]
    tab.expect("notification")
    status, body = live.api.call("POST", f"/notifications/{nid}/remind")
    assert status == 202 and body == {"reminding": 3}
    assert tab.expect("notification")["reminder"] is True
    status, body = live.api.call("POST", f"/notifications/{nid}/remind")
    assert status == 429 and body["error"]["code"] == "reminded_recently"
    plain = live.api.send("News", "Read it", targets=TO_7B)["id"]
    status, body = live.api.call("POST", f"/notifications/{plain}/remind")
    assert status == 409 and body["error"]["code"] == "not_asking_confirmation"
    live.api.call("POST", f"/notifications/{nid}/retract")
    status, body = live.api.call("POST", f"/notifications/{nid}/remind")
    assert status == 409 and body["error"]["code"] == "cannot_remind"


def test_at_the_deadline_the_sender_gets_the_list_and_the_status_page_offers_the_csv(
    app, database_url, push_service, smtp, live_server_factory
):
    live = start(app, database_url, live_server_factory, push_service, smtp)
    emails = live.school.emails
    tab = live.tab("s7b_1", resume=0)
    nid = live.api.send("Trip form", "Sign it", targets=TO_7B, confirm_by=iso(7))["id"]
    tab.ack(tab.expect("notification")["id"], "acknowledged")

    def report():
        return [
            m for m in to(smtp, emails["admin"]) if "Not confirmed by the deadline" in m["Subject"]
        ]

    wait_for(report, timeout=25)
    (mail,) = report()
    text = mail.get_body(("plain",)).get_content()
    assert "2 of 3 people had not confirmed" in text
    assert emails["s7b_2"] in text and emails["s7b_3"] in text and emails["s7b_1"] not in text
    assert f"http://school.test/notifications/{nid}/unconfirmed.csv" in text

    admin = signed_in(live.server.url, emails["admin"])
    _, _, page = admin.request(f"/notifications/{nid}")
    assert "2 did not confirm by the deadline." in page
    status, headers, text = admin.request(f"/notifications/{nid}/unconfirmed.csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["email"] for r in rows) == [emails["s7b_2"], emails["s7b_3"]]
    assert {r["classes"] for r in rows} == {"7b"}


def test_the_status_page_button_reminds_the_unconfirmed(
    app, database_url, push_service, smtp, live_server_factory
):
    live = start(app, database_url, live_server_factory, push_service, smtp)
    waiting = live.tab("s7b_2", resume=0)
    nid = live.api.send("Form", "Sign it", targets=TO_7B, require_ack=True)["id"]
    waiting.expect("notification")
    admin = signed_in(live.server.url, live.school.emails["admin"])
    _, _, page = admin.request(f"/notifications/{nid}")
    assert "Remind the 3 who have not confirmed" in page
    admin.request(f"/notifications/{nid}/remind", {"csrf_token": csrf_token_from(page)})
    _, _, page = admin.request(f"/notifications/{nid}")
    assert "Reminding 3 people who have not confirmed." in page
    assert waiting.expect("notification")["reminder"] is True


# Quiet hours --------------------------------------------------------------------------


def quiet_now() -> str:
    """A window around this moment, on the server's (UTC) clock."""
    now = utcnow()
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    return f"{start:%H:%M}-{end:%H:%M}"


def test_quiet_hours_hold_a_normal_push_and_email_but_not_an_emergency(
    app, database_url, push_service, smtp, live_server_factory
):
    live = start(
        app, database_url, live_server_factory, push_service, smtp, QUIET_HOURS=quiet_now()
    )
    subscribe(live, push_service, "s7b_1")
    tab = live.tab("s7b_2", resume=0)  # tabs are never held
    normal = live.api.send("Choir", "Practice moved", targets=TO_7B)["id"]
    assert tab.expect("notification")["id"] == normal
    fire = live.api.send("Fire", "Leave now", targets=TO_7B, priority="emergency")["id"]
    assert tab.expect("notification")["id"] == fire
    wait_for(
        lambda: any(p.message["id"] == fire for p in pushes(push_service, "s7b_1")), timeout=10
    )
    wait_for(lambda: to(smtp, live.school.emails["s7b_3"]), timeout=10)  # the emergency
    time.sleep(3)  # past the push and e-mail delays of the normal one (1 s and 2 s)
    assert [p.message["id"] for p in pushes(push_service, "s7b_1")] == [fire]
    assert all("Fire" in m["Subject"] for m in smtp.messages)
    with app.app_context(), session_scope(app) as session:
        held = session.scalars(
            select(Job).where(Job.notification_id == normal, Job.kind.in_(["push", "email"]))
        ).all()
    assert held and all(j.state is JobState.QUEUED and j.attempts == 0 for j in held)
    assert all(
        j.due_at > utcnow() + timedelta(minutes=30) and j.last_error == "quiet hours" for j in held
    )
