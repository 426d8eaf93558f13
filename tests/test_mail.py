"""E-mail for those no tab or device reached, against a real local SMTP server
(aiosmtpd, tests/smtp_server.py): the settings, the message, TLS, and what each kind of
failure does to the job."""

from __future__ import annotations

import re
import socket
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from webapp import config
from webapp.db import session_scope, utcnow
from webapp.models import Delivery, DeliveryState, Job, JobState, Notification, Priority, User
from webapp.services import jobs, mail, notifications, reach, receipts
from webapp.services import users as users_service
from webapp.services.audience import AudienceSpec
from webapp.services.mail import Security, SmtpSettings

from .conftest import TEST_SECRETS, make_test_app
from .helpers import csrf_token_from
from .smtp_server import SmtpServer, make_certificates

PUBLIC_URL = "https://bell.school.test"
LINK = re.compile(r"https://bell\.school\.test/l/(open|confirm)/([A-Za-z0-9_\-.]+)")


# Settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.school.test", SmtpSettings("mail.school.test", 25, Security.NONE)),
        ("smtp://10.0.0.5:2525", SmtpSettings("10.0.0.5", 2525, Security.NONE)),
        (
            "smtp://bell%40school.test:p%40ss%2Fw%3Ard@mail.school.test?starttls=true",
            SmtpSettings(
                "mail.school.test", 587, Security.STARTTLS, "bell@school.test", "p@ss/w:rd"
            ),
        ),
        ("smtp://mail.school.test:25?starttls=false", SmtpSettings("mail.school.test", 25, "none")),
        ("smtps://u:pw@mail.school.test", SmtpSettings("mail.school.test", 465, "tls", "u", "pw")),
        ("smtps://[::1]:4650", SmtpSettings("::1", 4650, Security.TLS)),
    ],
)
def test_smtp_urls_parse(url, expected):
    assert mail.parse_smtp_url(url) == expected


def test_the_password_is_not_in_the_settings_repr():
    settings = mail.parse_smtp_url("smtps://bell:hunter2-secret@mail.school.test")
    assert settings.password == "hunter2-secret"
    assert "hunter2" not in repr(settings)


def settings_with(**values) -> dict:
    settings = {**config.from_environment({}), **TEST_SECRETS, **values}
    return settings


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.school.test",
        "mail.school.test:25",
        "smtp://",
        "smtp://mail.school.test:99999",
        "smtp://mail.school.test:port",
        "smtp://mail.school.test/inbox",
        "smtp://mail.school.test?tls=true",
        "smtp://mail.school.test?starttls=maybe",
        "smtps://mail.school.test?starttls=true",
    ],
)
def test_a_bad_smtp_url_stops_the_start_naming_the_setting(url, tmp_path):
    url = url.replace("mail.school.test", "bell:s3cr3t-pw@mail.school.test", 1)
    with pytest.raises(config.ConfigError, match="SCHOOLBELL_SMTP_URL") as caught:
        config.finalise(settings_with(SMTP_URL=url, PUBLIC_URL=PUBLIC_URL), tmp_path)
    assert "s3cr3t" not in str(caught.value)


def test_production_mail_needs_a_public_url(tmp_path):
    settings = settings_with(ENV="production", SMTP_URL="smtp://mail.school.test")
    with pytest.raises(config.ConfigError, match="SCHOOLBELL_PUBLIC_URL must be set"):
        config.finalise(settings, tmp_path)


def test_development_links_point_at_the_local_server_and_mail_comes_from_its_host(tmp_path):
    settings = settings_with(SMTP_URL="smtp://127.0.0.1:2525")
    config.finalise(settings, tmp_path)
    assert settings["PUBLIC_URL"] == "http://127.0.0.1:8000"
    assert settings["MAIL_FROM"] == "Schoolbell <schoolbell@127.0.0.1>"


def test_mail_from_defaults_to_the_public_host(tmp_path):
    settings = settings_with(SMTP_URL="smtp://mail", PUBLIC_URL="https://bell.school.test/")
    config.finalise(settings, tmp_path)
    assert settings["MAIL_FROM"] == "Schoolbell <schoolbell@bell.school.test>"


@pytest.mark.parametrize("sender", ["Schoolbell", "a@b\r\nBcc: everyone@school.test"])
def test_a_bad_mail_from_stops_the_start(sender, tmp_path):
    settings = settings_with(SMTP_URL="smtp://mail", PUBLIC_URL=PUBLIC_URL, MAIL_FROM=sender)
    with pytest.raises(config.ConfigError, match="SCHOOLBELL_MAIL_FROM"):
        config.finalise(settings, tmp_path)


def test_a_ca_file_that_does_not_load_stops_the_start(tmp_path):
    (tmp_path / "not-a-ca.pem").write_text("hello")
    for ca_file in (tmp_path / "missing.pem", tmp_path / "not-a-ca.pem"):
        settings = settings_with(
            SMTP_URL="smtp://mail?starttls=true", PUBLIC_URL=PUBLIC_URL, SMTP_CA_FILE=str(ca_file)
        )
        with pytest.raises(config.ConfigError, match="SCHOOLBELL_SMTP_CA_FILE"):
            config.finalise(settings, tmp_path)


# A school with one sender, and recipients with and without a device ---------------------


@pytest.fixture
def make_app(database_url, tmp_path):
    """make_app(**config): an app on this test's database, links to PUBLIC_URL."""
    apps = []

    def make(**overrides):
        settings = {"PUBLIC_URL": PUBLIC_URL, "SMTP_TIMEOUT_S": 5, **overrides}
        app = make_test_app(database_url, tmp_path, **settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["schoolbell.db"].kw["bind"].dispose()


def people_on(app) -> dict[str, User]:
    """The sender, a guardian with no device, a student with a tab, on `app`'s database."""
    people = {}
    with app.app_context(), session_scope(app) as session:
        for handle, role, email, name in (
            ("admin", "admin", "ada@school.test", "Ada Admin"),
            ("guardian", "guardian", "grace@school.test", "Grace Guardian"),
            ("student", "student", "sam@school.test", "Sam Student"),
        ):
            data = users_service.UserInput(email=email, name=name, role=role)
            people[handle] = users_service.create(session, None, data)
            session.expunge(people[handle])
    return people


@pytest.fixture
def school(make_app):
    return people_on(make_app())


def send(app, school, *to: str, **fields) -> int:
    """Send as the admin to the `to` handles, both fallbacks due at once; the new id."""
    draft = notifications.Draft(
        title=fields.pop("title", "Early pick-up"),
        body=fields.pop("body", "School ends at **12:00** today."),
        audience=AudienceSpec(users=tuple(school[h].email for h in to)),
        **fields,
    )
    with session_scope(app) as session:
        sender = session.get(User, school["admin"].id)
        prepared = notifications.prepare(session, sender, draft)
        result = notifications.send(session, prepared, delays=reach.Delays(0, 0))
        return result.notification.id


def run_round(app) -> dict[str, JobState | None]:
    """Claim every due job once and run it: key -> how it ended (None: queued again)."""
    with session_scope(app) as session:
        claimed = jobs.claim(session, limit=100, lease_s=60)
    return {job.key: jobs.run(app, job) for job in claimed}


def run_due_jobs(app) -> dict[str, JobState | None]:
    """Run rounds until nothing is due (a job queued again waits for its backoff)."""
    outcomes: dict[str, JobState | None] = {}
    while ran := run_round(app):
        outcomes.update(ran)
    return outcomes


def delivery_of(app, notification_id: int, user) -> Delivery:
    with session_scope(app) as session:
        return session.scalar(
            select(Delivery).where(
                Delivery.notification_id == notification_id, Delivery.user_id == user.id
            )
        )


def email_job(app, delivery_id: int) -> Job:
    with session_scope(app) as session:
        return session.scalar(select(Job).where(Job.key == f"{reach.EMAIL}:{delivery_id}"))


def links_in(text: str) -> dict[str, str]:
    return {purpose: match.group(0) for match in LINK.finditer(text) for purpose in [match[1]]}


def a_tab_reported(app, notification_id: int, user, state: str = "delivered") -> None:
    with session_scope(app) as session:
        receipts.record_one(session, user.id, notification_id, state)


# Sending --------------------------------------------------------------------------------


def test_the_guardian_without_a_device_gets_one_email(make_app, smtp, school):
    app = make_app(SMTP_URL=smtp.url, MAIL_FROM="Schoolbell <bell@school.test>")
    to = ("guardian", "student")
    notification_id = send(app, school, *to)
    run_round(app)  # the fan-outs: an e-mail job per recipient still to reach
    a_tab_reported(app, notification_id, school["student"])  # the student's tab was open

    outcomes = run_due_jobs(app)

    guardian, student = (delivery_of(app, notification_id, school[h]) for h in to)
    assert outcomes == {
        f"email:{guardian.id}": JobState.DONE,
        f"email:{student.id}": JobState.CANCELLED,
    }
    [message] = smtp.wait_for_messages(1)
    assert smtp.envelopes[0].rcpt_tos == ("grace@school.test",)
    assert message["Subject"] == "[Schoolbell] Early pick-up"
    assert message["From"] == "Schoolbell <bell@school.test>"
    assert message["To"] == "Grace Guardian <grace@school.test>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert re.fullmatch(r"<[^@\s]+@school\.test>", message["Message-ID"])
    assert message["Date"] is not None
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "School ends at **12:00** today." in text  # the Markdown as written
    assert "Sent by Ada Admin, " in text
    assert "School ends at <strong>12:00</strong> today." in html  # sanitised HTML
    assert f"{PUBLIC_URL}/settings" in text
    assert f"{PUBLIC_URL}/settings" in html
    assert set(links_in(text)) == {"open"}
    assert links_in(html) == links_in(text)
    assert f"Open: {links_in(text)['open']}" in text
    assert "Confirm" not in text

    assert guardian.emailed_at is not None
    assert delivery_of(app, notification_id, school["guardian"]).state is DeliveryState.PENDING
    assert student.emailed_at is None
    assert run_due_jobs(app) == {}  # nothing more goes out
    assert len(smtp.received()) == 1


def test_one_email_on_both_backends(any_database_url, tmp_path, smtp):
    app = make_test_app(any_database_url, tmp_path, SMTP_URL=smtp.url, PUBLIC_URL=PUBLIC_URL)
    try:
        school = people_on(app)
        notification_id = send(app, school, "guardian")
        guardian = delivery_of(app, notification_id, school["guardian"])
        assert run_due_jobs(app)[f"email:{guardian.id}"] is JobState.DONE
        [message] = smtp.wait_for_messages(1)
        assert message["To"] == "Grace Guardian <grace@school.test>"
        assert delivery_of(app, notification_id, school["guardian"]).emailed_at is not None
        assert run_due_jobs(app) == {}
    finally:
        app.extensions["schoolbell.db"].kw["bind"].dispose()


def test_an_announcement_to_confirm_carries_a_confirm_link(make_app, smtp, school):
    app = make_app(SMTP_URL=smtp.url)
    send(app, school, "guardian", require_ack=True)
    run_due_jobs(app)
    [message] = smtp.wait_for_messages(1)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    found = links_in(text)
    assert set(found) == {"open", "confirm"}
    assert f"Confirm: {found['confirm']}" in text
    assert links_in(html) == found
    assert found["open"].split("/")[-1] != found["confirm"].split("/")[-1]


def test_the_mail_links_open_and_confirm_through_the_web(make_app, smtp, school):
    app = make_app(SMTP_URL=smtp.url)
    notification_id = send(app, school, "guardian", require_ack=True)
    run_due_jobs(app)
    [message] = smtp.wait_for_messages(1)
    found = links_in(message.get_body(("plain",)).get_content())
    client = app.test_client()

    assert client.get(found["open"].removeprefix(PUBLIC_URL)).status_code == 200
    assert delivery_of(app, notification_id, school["guardian"]).state is DeliveryState.READ
    path = found["confirm"].removeprefix(PUBLIC_URL)
    page = client.get(path).get_data(as_text=True)
    assert client.post(path, data={"csrf_token": csrf_token_from(page)}).status_code == 200
    delivery = delivery_of(app, notification_id, school["guardian"])
    assert (delivery.state, delivery.channel) == (DeliveryState.ACKNOWLEDGED, "email")


@pytest.mark.parametrize(
    ("priority", "subject"),
    [
        ("normal", "[Schoolbell] Gym <closed> & more"),
        ("urgent", "[Schoolbell] URGENT: Gym <closed> & more"),
        ("emergency", "[Schoolbell] EMERGENCY: Gym <closed> & more"),
    ],
)
def test_the_subject_says_the_priority_and_the_html_escapes_the_title(
    make_app, smtp, school, priority, subject
):
    app = make_app(SMTP_URL=smtp.url)
    send(
        app,
        school,
        "guardian",
        title="Gym <closed> & more",
        body="<script>alert(1)</script>Use *door B*",
        priority=priority,
    )
    run_due_jobs(app)
    [message] = smtp.wait_for_messages(1)
    assert message["Subject"] == subject
    html = message.get_body(("html",)).get_content()
    assert "Gym &lt;closed&gt; &amp; more" in html
    assert "<closed>" not in html
    assert "<script" not in html.lower()
    assert "<em>door B</em>" in html
    assert (message["Importance"] == "high") is (priority != "normal")


def test_names_and_titles_beyond_ascii_are_encoded(make_app, smtp, school):
    app = make_app(SMTP_URL=smtp.url)
    with app.app_context(), session_scope(app) as session:
        data = users_service.UserInput(
            email="jm@school.test", name="Jürgen Müller", role="guardian"
        )
        school["jurgen"] = users_service.create(session, None, data)
        session.expunge(school["jurgen"])
    send(app, school, "jurgen", title="Schließung der Mensa heute")
    run_due_jobs(app)
    [message] = smtp.wait_for_messages(1)
    raw = message.as_bytes()
    assert b"=?utf-8?" in raw  # RFC 2047 on the wire; decoded back below
    assert message["To"] == "Jürgen Müller <jm@school.test>"
    assert message["Subject"] == "[Schoolbell] Schließung der Mensa heute"


def test_an_emergency_reaches_even_those_who_turned_email_off(make_app, smtp, school):
    with session_scope(make_app()) as session:
        session.execute(
            update(User).where(User.id == school["guardian"].id).values(email_enabled=False)
        )
        session.commit()
    app = make_app(SMTP_URL=smtp.url)
    send(app, school, "guardian")
    send(app, school, "guardian", priority="emergency", title="Lockdown")
    run_due_jobs(app)
    [message] = smtp.wait_for_messages(1)
    assert message["Subject"] == "[Schoolbell] EMERGENCY: Lockdown"
    assert "whatever their settings" in message.get_body(("plain",)).get_content()


# When the job finds it is not needed ------------------------------------------------------


def test_a_delivery_read_before_the_job_runs_is_cancelled_and_nobody_is_mailed(
    make_app, smtp, school
):
    app = make_app(SMTP_URL=smtp.url)
    notification_id = send(app, school, "guardian")
    run_round(app)  # the e-mail job is queued ...
    a_tab_reported(app, notification_id, school["guardian"], "read")  # ... then it is read

    delivery = delivery_of(app, notification_id, school["guardian"])
    assert run_due_jobs(app) == {f"email:{delivery.id}": JobState.CANCELLED}
    assert email_job(app, delivery.id).last_error == "already read"
    assert delivery_of(app, notification_id, school["guardian"]).emailed_at is None
    assert smtp.received() == []


def test_a_withdrawn_announcement_is_not_mailed(make_app, smtp, school):
    app = make_app(SMTP_URL=smtp.url)
    notification_id = send(app, school, "guardian")
    run_round(app)
    with session_scope(app) as session:
        session.execute(
            update(Notification)
            .where(Notification.id == notification_id)
            .values(retracted_at=utcnow())
        )
        session.commit()
    assert set(run_due_jobs(app).values()) == {JobState.CANCELLED}
    assert smtp.received() == []


def test_without_smtp_an_email_job_is_cancelled(make_app, school):
    app = make_app()
    notification_id = send(app, school, "guardian")
    delivery = delivery_of(app, notification_id, school["guardian"])
    with session_scope(app) as session:
        jobs.enqueue(
            session,
            reach.EMAIL,
            f"{reach.EMAIL}:{delivery.id}",
            notification_id=notification_id,
            delivery_id=delivery.id,
        )
        session.commit()
    assert run_due_jobs(app)[f"email:{delivery.id}"] is JobState.CANCELLED
    assert email_job(app, delivery.id).last_error == "no SMTP server is configured"


# When the mail server fails --------------------------------------------------------------


def queued_email(app, school) -> tuple[int, int]:
    """Send to the guardian and run the fan-outs: (notification id, delivery id)."""
    notification_id = send(app, school, "guardian")
    run_round(app)
    return notification_id, delivery_of(app, notification_id, school["guardian"]).id


def assert_queued_again(app, delivery_id: int, error: str) -> None:
    job = email_job(app, delivery_id)
    assert job.state is JobState.QUEUED
    assert job.attempts == 1
    assert job.due_at > utcnow() + timedelta(seconds=2)  # backs off
    assert error in job.last_error


@pytest.mark.parametrize("stage", ["data", "rcpt"])
def test_a_temporary_refusal_keeps_the_job_for_later(make_app, smtp, school, stage):
    app = make_app(SMTP_URL=smtp.url)
    smtp.reply_code, smtp.refuse_at = 451, stage
    notification_id, delivery_id = queued_email(app, school)
    assert run_due_jobs(app) == {f"email:{delivery_id}": None}
    assert_queued_again(app, delivery_id, "451")
    assert delivery_of(app, notification_id, school["guardian"]).emailed_at is None

    smtp.reply_code = None  # the server recovers; the retry sends it
    with session_scope(app) as session:
        session.execute(
            update(Job).where(Job.key == f"email:{delivery_id}").values(due_at=utcnow())
        )
        session.commit()
    assert run_due_jobs(app) == {f"email:{delivery_id}": JobState.DONE}
    assert len(smtp.wait_for_messages(1)) == 1


@pytest.mark.parametrize("stage", ["data", "rcpt"])
def test_a_permanent_refusal_fails_the_job(make_app, smtp, school, stage):
    app = make_app(SMTP_URL=smtp.url)
    smtp.reply_code, smtp.refuse_at = 550, stage
    _, delivery_id = queued_email(app, school)
    assert run_due_jobs(app) == {f"email:{delivery_id}": JobState.FAILED}
    job = email_job(app, delivery_id)
    assert "550" in job.last_error
    assert smtp.received() == []


def a_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_server_means_later(make_app, school):
    app = make_app(SMTP_URL=f"smtp://127.0.0.1:{a_closed_port()}")
    _, delivery_id = queued_email(app, school)
    assert run_due_jobs(app) == {f"email:{delivery_id}": None}
    assert_queued_again(app, delivery_id, "ConnectionRefusedError")


def test_a_server_that_never_answers_times_out_and_means_later(make_app, school):
    with socket.socket() as silent:  # accepts connections (backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        app = make_app(SMTP_URL=f"smtp://127.0.0.1:{silent.getsockname()[1]}", SMTP_TIMEOUT_S=1)
        _, delivery_id = queued_email(app, school)
        assert run_due_jobs(app) == {f"email:{delivery_id}": None}
    assert_queued_again(app, delivery_id, "timed out")


# TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certificates"))


def test_starttls_with_the_schools_ca_and_a_login(make_app, school, certificates):
    credentials = ("bell@school.test", "p@ss:w/rd")
    with SmtpServer(tls="starttls", certificates=certificates, credentials=credentials) as smtp:
        assert "bell%40school.test:p%40ss%3Aw%2Frd@" in smtp.url
        app = make_app(SMTP_URL=smtp.url, SMTP_CA_FILE=str(certificates.ca_file))
        _, delivery_id = queued_email(app, school)
        assert run_due_jobs(app) == {f"email:{delivery_id}": JobState.DONE}
        assert len(smtp.wait_for_messages(1)) == 1
        assert smtp.logins == ["bell@school.test"]


def test_smtps_with_the_schools_ca(make_app, school, certificates):
    with SmtpServer(tls="implicit", certificates=certificates) as smtp:
        assert smtp.url.startswith("smtps://")
        app = make_app(SMTP_URL=smtp.url, SMTP_CA_FILE=str(certificates.ca_file))
        _, delivery_id = queued_email(app, school)
        assert run_due_jobs(app) == {f"email:{delivery_id}": JobState.DONE}
        assert len(smtp.wait_for_messages(1)) == 1


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_a_certificate_nobody_trusts_is_refused_and_tried_later(
    make_app, school, certificates, tmp_path, tls
):
    other_ca = make_certificates(tmp_path / "other")
    with SmtpServer(tls=tls, certificates=certificates) as smtp:
        for ca_file in ("", str(other_ca.ca_file)):  # the system's CAs, another CA
            app = make_app(SMTP_URL=smtp.url, SMTP_CA_FILE=ca_file)
            notification_id = send(app, school, "guardian")
            run_round(app)
            delivery_id = delivery_of(app, notification_id, school["guardian"]).id
            assert run_due_jobs(app) == {f"email:{delivery_id}": None}
            assert_queued_again(app, delivery_id, "CERTIFICATE_VERIFY_FAILED")
        assert smtp.received() == []


def test_the_message_composes_outside_a_request(make_app, school):
    """compose() renders its templates with only an app context (as the runner has)."""
    app = make_app()
    notification_id = send(app, school, "guardian", priority="urgent")
    with session_scope(app) as session, app.app_context():
        notification = session.get(
            Notification, notification_id, options=[joinedload(Notification.author)]
        )
        user = session.get(User, school["guardian"].id)
        links = mail.Links(f"{PUBLIC_URL}/l/open/x", None)
        message = mail.compose(notification, user, links, app.config)
    assert notification.priority is Priority.URGENT
    assert message["Subject"] == "[Schoolbell] URGENT: Early pick-up"
    assert message["From"] == "Schoolbell <schoolbell@bell.school.test>"
