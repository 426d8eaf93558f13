"""E-mail for those no tab or device reached: composing, sending over SMTP, the job.

One e-mail per recipient (reach.py decides who, and when), plain text with an HTML
alternative, carrying signed links (tokens.py): one that opens the announcement and
records `read`, and, where confirmation is required, one that confirms it without
signing in (services/links.py, links/views.py).

The job loads what it needs in one short session and closes it before it talks to the
mail server: on SQLite an open transaction holds the database's write lock, and an
SMTP conversation can take seconds. Under gunicorn's gevent worker smtplib's sockets
are cooperative (the standard library is monkey-patched), so a slow server makes this
greenlet wait, not the process; no thread is needed.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from enum import StrEnum
from urllib.parse import parse_qsl, unquote, urlsplit

from flask import Flask, render_template
from flask_babel import gettext
from sqlalchemy import update
from sqlalchemy.orm import Session, joinedload

from .. import i18n, metrics, tokens
from ..db import session_scope, utcnow
from ..i18n import N_
from ..models import Delivery, Notification, Priority, User
from . import jobs, quiet_hours, reach

log = logging.getLogger(__name__)
DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
STARTTLS_PORT = 587
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
SUBJECT_PREFIX = "[Schoolbell] "
# The subject's prefixes, innermost first (translated in the recipient's language).
PRIORITY_PREFIX = {
    Priority.URGENT: N_("URGENT: %(title)s"),
    Priority.EMERGENCY: N_("EMERGENCY: %(title)s"),
}
REMINDER_PREFIX = N_("Reminder: %(title)s")
DRILL_PREFIX = N_("DRILL: %(title)s")
DRILL_LINE = N_(
    "This is a DRILL: an exercise, not a real emergency. Follow it as you would the real thing."
)
SETTINGS_PATH = "/settings"  # where people choose their channels
EMAIL_REMIND = "email-remind"  # a reminder to confirm, to one recipient


class Security(StrEnum):
    """How the connection to the mail server is protected."""

    NONE = "none"  # smtp:// (a relay on the same host or network)
    STARTTLS = "starttls"  # smtp://...?starttls=true: upgraded before anything is sent
    TLS = "tls"  # smtps://: TLS from the first byte


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send, from SMTP_URL (and SMTP_CA_FILE). The password is left out
    of repr(), so logging these settings never shows it."""

    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None


@dataclass(frozen=True)
class Links:
    """The signed links one e-mail carries."""

    open_url: str
    confirm_url: str | None  # only where confirmation is required


def configured(config) -> bool:
    """Whether e-mail can be sent: an SMTP server is set."""
    return bool(config.get("SMTP_URL"))


def parse_smtp_url(url: str, *, ca_file: str | None = None) -> SmtpSettings:
    """`smtp://[user:password@]host[:port][?starttls=true]` (port 25, or 587 with
    STARTTLS) or `smtps://[user:password@]host[:port]` (465); user and password
    percent-encoded. Raises ValueError saying what is wrong (never echoing the URL,
    which may hold a password)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError("use smtp://host[:port][?starttls=true] or smtps://host[:port]")
    if not parts.hostname:
        raise ValueError("the mail server's host name is missing")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("only a host, a port and ?starttls=true may be given")
    starttls = False
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key != "starttls" or value.lower() not in TRUE | FALSE:
            raise ValueError("the only option is ?starttls=true (or false)")
        starttls = value.lower() in TRUE
    if starttls and parts.scheme == "smtps":
        raise ValueError("smtps:// is TLS already: starttls applies to smtp:// only")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if parts.scheme == "smtps":
        security, default_port = Security.TLS, DEFAULT_PORTS["smtps"]
    elif starttls:
        security, default_port = Security.STARTTLS, STARTTLS_PORT
    else:
        security, default_port = Security.NONE, DEFAULT_PORTS["smtp"]
    return SmtpSettings(
        host=parts.hostname,
        port=port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ca_file=ca_file or None,
    )


def smtp_settings(config) -> SmtpSettings:
    """The app's SMTP settings (config.finalise has checked they parse)."""
    return parse_smtp_url(config["SMTP_URL"], ca_file=config.get("SMTP_CA_FILE"))


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """Certificates are always verified, host name included: against the system's
    authorities, or the school's own (SMTP_CA_FILE) for an internal server."""
    return ssl.create_default_context(cafile=settings.ca_file)


def default_sender(public_url: str) -> str:
    """MAIL_FROM when none is set: schoolbell@ the host people reach Schoolbell at."""
    host = urlsplit(public_url).hostname or "localhost"
    return str(Address("Schoolbell", "schoolbell", host))


def valid_sender(value: str) -> bool:
    """Whether MAIL_FROM is one address (`Name <a@b>` or `a@b`) on one line."""
    _, address = parseaddr(value)
    return "@" in address and not any(char in value for char in "\r\n")


def link_url(public_url: str, purpose: str, token: str) -> str:
    """Where a signed link points: <PUBLIC_URL>/l/<purpose>/<token> (links/views.py)."""
    return f"{public_url}/l/{purpose}/{token}"


def links_for(config, user_id: int, notification: Notification) -> Links:
    """Fresh signed links for one recipient of one announcement."""

    def signed(purpose: str) -> str:
        token = tokens.sign_link(config["SECRET_KEY"], purpose, user_id, notification.id)
        return link_url(config["PUBLIC_URL"], purpose, token)

    return Links(signed("open"), signed("confirm") if notification.require_ack else None)


def _one_line(text: str) -> str:
    """Header text on one line (a line break in a header would start a new header)."""
    return " ".join((text or "").split())


def _message(subject: str, to: User, config) -> EmailMessage:
    """An empty e-mail to one person with Schoolbell's headers."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = config["MAIL_FROM"]
    message["To"] = Address(_one_line(to.name), addr_spec=to.email)
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid("schoolbell", domain=message["From"].addresses[0].domain)
    # Tell mail servers and programs this is automatic: no out-of-office replies.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    return message


def compose(
    notification: Notification, user: User, links: Links, config, *, reminder: bool = False
) -> EmailMessage:
    """The e-mail for one recipient: plain text (the Markdown as written) and an HTML
    alternative (the sanitised body), from templates/mail/, in the current language
    (the job's `i18n.speaking`). Needs an app context for the templates;
    `notification.author` must be loaded."""
    title = _one_line(notification.title)
    subject = title
    if notification.priority in PRIORITY_PREFIX:
        subject = gettext(PRIORITY_PREFIX[notification.priority], title=subject)
    if reminder:
        subject = gettext(REMINDER_PREFIX, title=subject)
    if notification.drill:  # a drill says so first: nobody must take it for the real thing
        subject = gettext(DRILL_PREFIX, title=subject)
    subject = SUBJECT_PREFIX + subject
    context = {
        "notification": notification,
        "title": title,
        "subject": subject,
        "author": notification.author.name if notification.author else "Schoolbell",
        "sent_at": i18n.local_time(notification.created_at),
        "expires_at": (
            i18n.local_time(notification.expires_at) if notification.expires_at else None
        ),
        "recipient": user.name,
        "drill_line": gettext(DRILL_LINE) if notification.drill else None,
        "reminder_line": _reminder_line(notification) if reminder else None,
        "links": links,
        "settings_url": config["PUBLIC_URL"] + SETTINGS_PATH,
    }
    message = _message(subject, user, config)
    if notification.priority in PRIORITY_PREFIX:
        message["Importance"] = "high"
    message.set_content(render_template("mail/notification.txt", **context))
    message.add_alternative(render_template("mail/notification.html", **context), subtype="html")
    return message


def compose_deadline_report(
    notification: Notification, author: User, missing: list[User], total: int, config
) -> EmailMessage:
    """The e-mail to an announcement's sender at its deadline: who did not confirm
    (`missing`, the first of `total`), with links to the status page and the CSV. Needs
    an app context for the templates; speaks the current language (`i18n.speaking`)."""
    title = _one_line(notification.title)
    subject = SUBJECT_PREFIX + gettext("Not confirmed by the deadline: %(title)s", title=title)
    status_url = f"{config['PUBLIC_URL']}/notifications/{notification.id}"
    context = {
        "subject": subject,
        "title": title,
        "author": author.name,
        "missing": missing,
        "total": total,
        "recipients": notification.recipient_count,
        "deadline": i18n.local_time(notification.confirm_by),
        "status_url": status_url,
        "csv_url": status_url + "/unconfirmed.csv",
    }
    message = _message(subject, author, config)
    message.set_content(render_template("mail/deadline.txt", **context))
    message.add_alternative(render_template("mail/deadline.html", **context), subtype="html")
    return message


def _reminder_line(notification: Notification) -> str:
    if notification.confirm_by is None:
        return gettext("You have not confirmed this announcement yet: please confirm it.")
    return gettext(
        "You have not confirmed this announcement yet: please confirm it by %(deadline)s.",
        deadline=i18n.local_time(notification.confirm_by),
    )


def send_message(settings: SmtpSettings, message: EmailMessage, timeout_s: float) -> None:
    """Hand one message to the mail server: TLS as configured (certificates verified),
    login when credentials are set. Raises smtplib's errors or OSError."""
    if settings.security is Security.TLS:
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=timeout_s, context=tls_context(settings)
        )
    else:
        client = smtplib.SMTP(settings.host, settings.port, timeout=timeout_s)
    with client:  # QUIT at the end, even after an error
        if settings.security is Security.STARTTLS:
            client.starttls(context=tls_context(settings))
        if settings.username:
            client.login(settings.username, settings.password or "")
        client.send_message(message)


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {_one_line(text)}"


def job_outcome(exc: Exception) -> jobs.JobEnded:
    """What a failed send means for its job: a permanent refusal (5xx) gives up; a
    temporary one (4xx), a dropped or refused connection, a timeout or a TLS failure
    tries again later (the queue backs off, and stops after JOB_MAX_ATTEMPTS)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = list(exc.recipients.values())
        reason = "the mail server refused the recipient: " + "; ".join(
            _reply(code, text) for code, text in replies
        )
        if replies and all(400 <= code < 500 for code, _ in replies):  # greylisting, full
            return jobs.RetryLater(reason)
        return jobs.GiveUp(reason)
    if isinstance(exc, smtplib.SMTPResponseException):
        reason = "the mail server answered " + _reply(exc.smtp_code, exc.smtp_error)
        if 500 <= exc.smtp_code < 600:
            return jobs.GiveUp(reason)
        return jobs.RetryLater(reason)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return jobs.RetryLater(f"the mail server closed the connection: {exc}")
    return jobs.RetryLater(f"could not send through the mail server: {type(exc).__name__}: {exc}")


def _load(session: Session, job: jobs.JobRef) -> tuple[Notification, Delivery, User]:
    """The job's delivery, its announcement (with its author) and recipient; Cancel
    when any of them is gone."""
    delivery = session.get(Delivery, job.delivery_id) if job.delivery_id else None
    if delivery is None:
        raise jobs.Cancel("the delivery is gone")
    notification = session.get(
        Notification, delivery.notification_id, options=[joinedload(Notification.author)]
    )
    user = session.get(User, delivery.user_id)
    if notification is None or user is None:
        raise jobs.Cancel("the announcement or its recipient is gone")
    return notification, delivery, user


@jobs.handler(reach.EMAIL)
def send_email(app: Flask, job: jobs.JobRef) -> None:
    """Send one recipient's e-mail, unless a receipt, an opt-out, a withdrawal or an
    expiry came first; record when the mail server took it."""
    _send(app, job, reminder=False)


@jobs.handler(EMAIL_REMIND)
def send_reminder(app: Flask, job: jobs.JobRef) -> None:
    """Remind one recipient who has not confirmed (unless they have since, turned
    e-mails off, or it was withdrawn or expired)."""
    _send(app, job, reminder=True)


metrics.count_jobs(metrics.EMAILS, reach.EMAIL, EMAIL_REMIND)  # how they end, by result


def reminder_still_needed(notification: Notification, delivery: Delivery, user: User) -> str | None:
    """Why a queued reminder e-mail is no longer needed (None: send it)."""
    if not user.active:
        return "the recipient was deactivated"
    if delivery.acknowledged_at is not None:
        return "already confirmed"
    if notification.priority is not Priority.EMERGENCY and not user.email_enabled:
        return "the recipient turned e-mails off"
    return None


def _send(app: Flask, job: jobs.JobRef, *, reminder: bool) -> None:
    if not configured(app.config):
        raise jobs.Cancel("no SMTP server is configured")
    still_needed = reminder_still_needed if reminder else reach.email_still_needed
    with session_scope(app) as session:
        notification, delivery, user = _load(session, job)
        reason = reach.check_live(notification) or still_needed(notification, delivery, user)
        if reason is not None:
            raise jobs.Cancel(reason)
    held = quiet_hours.until(app.config, notification.priority, utcnow())
    if held is not None:
        raise jobs.Defer("quiet hours", held)
    # The session is closed (its transaction ended) before the mail server is contacted;
    # everything compose() reads was loaded above.
    with app.app_context(), i18n.speaking(user.language, app.config):
        message = compose(
            notification,
            user,
            links_for(app.config, user.id, notification),
            app.config,
            reminder=reminder,
        )
    try:
        send_message(smtp_settings(app.config), message, app.config["SMTP_TIMEOUT_S"])
    except (smtplib.SMTPException, OSError) as exc:
        raise job_outcome(exc) from None
    with session_scope(app) as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery.id, Delivery.emailed_at.is_(None))
            .values(emailed_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        session.commit()
    log.info("e-mailed announcement %d to user %d", notification.id, user.id)
