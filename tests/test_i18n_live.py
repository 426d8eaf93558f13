"""German and English on a real gunicorn + gevent server: the client's strings in the
socket's hello, a dashboard's live fragments, e-mails (a real SMTP server) and pushes (a
stand-in push service that decrypts them), each in its reader's language."""

from __future__ import annotations

from sqlalchemy import update

from webapp.db import session_scope
from webapp.models import User

from .helpers import wait_for
from .school import LiveSchool, build_school
from .test_reach_live import pushes, reach_env, subscribe
from .wsclient import WSClient

TO_7B = {"classes": [{"name": "7b", "audience": ["students", "guardians"]}]}


def speaks(app, school, **languages: str | None) -> None:
    """Set people's own language choice, by handle."""
    with session_scope(app) as session:
        for handle, language in languages.items():
            session.execute(
                update(User).where(User.id == school.ids[handle]).values(language=language)
            )
        session.commit()


def tab(live: LiveSchool, handle: str, accept_language: str | None = None) -> WSClient:
    """A tab of `handle`'s (its browser asking for `accept_language`); its hello read."""
    token = live.api.client_token(live.school.emails[handle])
    client = WSClient(live.server.url, protocols=["schoolbell", "schoolbell.jwt." + token])
    if accept_language:
        client.headers.append(f"Accept-Language: {accept_language}")
    live.tabs.append(client.connect())
    return client


def test_the_hello_brings_the_client_its_language_and_strings(
    app, database_url, live_server_factory
):
    school = build_school(app)
    speaks(app, school, s7b_1="de", s7b_2="en", s7b_3=None)
    live = LiveSchool(school, live_server_factory(database_url, TIMEZONE="Europe/Berlin"))
    try:
        german = tab(live, "s7b_1", accept_language="en").hello()
        assert (german["locale"], german["time_zone"]) == ("de", "Europe/Berlin")
        assert german["strings"]["Confirm"] == "Bestätigen"
        assert german["strings"]["I'm safe"] == "Ich bin in Sicherheit"
        stopped = german["strings"][
            "Live announcements stopped: {reason}. Reload the page to try again."
        ]
        assert stopped.startswith("Live-Ankündigungen angehalten: {reason}.")
        english = tab(live, "s7b_2", accept_language="de").hello()  # their own choice wins
        assert english["locale"] == "en" and "strings" not in english  # built into the client
        browser_german = tab(live, "s7b_3", accept_language="de-DE,de;q=0.9").hello()
        assert browser_german["locale"] == "de"
        assert browser_german["strings"] == german["strings"]
        assert tab(live, "s7b_3").hello()["locale"] == "en"  # the school's default
    finally:
        live.close()


def test_dashboards_get_live_fragments_in_their_watchers_language(
    app, database_url, live_server_factory
):
    school = build_school(app)
    speaks(app, school, t7b="de")
    live = LiveSchool(school, live_server_factory(database_url))
    try:
        sent = live.api.send("Trip", targets=TO_7B)

        def watch(handle: str) -> WSClient:
            token = live.api.client_token(school.emails[handle])
            query = f"watch=notification:{sent['id']}"
            return WSClient(live.server.url, token=token, query=query).connect()

        teacher, admin = watch("t7b"), watch("admin")
        assert "<h2" in (first := teacher.recv()) and "Zustellung" in first
        assert "Delivery" in admin.recv()
        student = tab(live, "s7b_1")
        student.hello()
        student.send_json({"type": "resume", "last_id": None})
        student.ack(student.expect("notification")["id"], "read")
        german, english = teacher.recv(timeout=5), admin.recv(timeout=5)
        assert 'data-state="read">1<' in german and "Gelesen" in german
        assert "Delivery" not in german
        assert 'data-state="read">1<' in english and "Delivery" in english
        assert "Zustellung" not in english
    finally:
        live.close()


def test_emails_and_pushes_speak_each_recipients_language(
    app, database_url, live_server_factory, push_service, smtp
):
    school = build_school(app)
    speaks(app, school, g7b_1="de", g7b_2="en")
    server = live_server_factory(
        database_url, **reach_env(push_service, smtp, PUBLIC_URL="http://placeholder")
    )
    live = LiveSchool(school, server)
    try:
        for handle in ("g7b_1", "g7b_2"):
            subscribe(live, push_service, handle)
        live.api.send(  # an emergency drill: pushes and e-mails at once
            "Lockdown",
            "Stay inside.",
            priority="emergency",
            drill=True,
            require_ack=True,
            targets={"users": [school.emails["g7b_1"], school.emails["g7b_2"]]},
        )
        smtp.wait_for_messages(2, timeout=15)
        mail = {str(m["To"]).split("<")[1].rstrip(">"): m for m in smtp.messages}
        german, english = mail[school.emails["g7b_1"]], mail[school.emails["g7b_2"]]
        assert german["Subject"] == "[Schoolbell] PROBEALARM: NOTFALL: Lockdown"
        assert english["Subject"] == "[Schoolbell] DRILL: EMERGENCY: Lockdown"
        german_text = german.get_body(("plain",)).get_content()
        assert "Dies ist ein PROBEALARM" in german_text and "Bestätigen: http" in german_text
        assert "Gesendet von ADMIN" in german_text
        german_html = german.get_body(("html",)).get_content()
        assert '<html lang="de">' in german_html and ">Bestätigen</a>" in german_html
        english_text = english.get_body(("plain",)).get_content()
        assert "This is a DRILL" in english_text and "Confirm: http" in english_text

        pushed = {h: wait_for(lambda h=h: pushes(push_service, h)) for h in ("g7b_1", "g7b_2")}
        german_push, english_push = pushed["g7b_1"][0].message, pushed["g7b_2"][0].message
        assert (german_push["title"], german_push["prefix"], german_push["drill_prefix"]) == (
            "PROBEALARM: Lockdown",
            "NOTFALL: ",
            "PROBEALARM: ",
        )
        assert (english_push["title"], english_push["prefix"], english_push["drill_prefix"]) == (
            "DRILL: Lockdown",
            "EMERGENCY: ",
            "DRILL: ",
        )
    finally:
        live.close()
