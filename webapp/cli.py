"""Command line: `flask --app wsgi <command>`. Each command calls one service."""

from __future__ import annotations

import json
import sys
from datetime import datetime

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from . import errors, migrate
from .db import get_session
from .errors import DomainError
from .models import Priority, Role, User
from .services import (
    api_tokens,
    audience,
    history,
    notifications,
    privacy,
    reach,
    roster_import,
    status,
    users,
    visibility,
    withdrawal,
)

db_cli = AppGroup("db", help="Database migrations (Alembic).")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database to REVISION (default: head)."""
    migrate.upgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"Database is at {revision}.")


@db_cli.command("check")
def db_check() -> None:
    """Fail if the models differ from the migrated database."""
    migrate.check(current_app.config["DATABASE_URL"])
    click.echo("Models and migrations agree.")


@db_cli.command("revision")
@click.option("-m", "--message", required=True)
def db_revision(message: str) -> None:
    """Autogenerate a migration from the models."""
    migrate.revision(current_app.config["DATABASE_URL"], message)


def _fail(exc: DomainError) -> None:
    click.echo(f"Error: {exc.message}", err=True)
    sys.exit(1)


@click.command("create-admin")
@with_appcontext
@click.argument("email")
@click.option("--name", default="Administrator", show_default=True)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Asked for when not given.",
)
def create_admin(email: str, name: str, password: str) -> None:
    """Create an administrator account."""
    try:
        user = users.create(
            get_session(),
            None,
            users.UserInput(email=email, name=name, role=Role.ADMIN.value, password=password),
        )
    except DomainError as exc:
        _fail(exc)
    click.echo(f"Created administrator {user.email}.")


@click.command("seed-demo")
@with_appcontext
@click.option("--if-empty", is_flag=True, help="Do nothing when any user exists.")
def seed_demo(if_empty: bool) -> None:
    """Load a demo school: an admin, teachers, six classes, students and guardians."""
    from . import demo

    session = get_session()
    if if_empty and not demo.is_empty(session):
        summary = demo.loaded_summary(session)
        if summary is None:
            click.echo("The database already has users; the demo school was not loaded.")
        else:
            click.echo("The demo school is already loaded.\n" + summary.describe())
        return
    try:
        summary = demo.seed(session)
    except DomainError as exc:
        _fail(exc)
    click.echo(summary.describe())


@click.command("import-roster")
@with_appcontext
@click.argument("file", type=click.File("rb"))
def import_roster(file) -> None:
    """Import users, classes, memberships and guardianships from a CSV FILE."""
    report = roster_import.import_csv(get_session(), None, file.read(), source=file.name)
    for error in report.errors:
        click.echo(f"line {error.line}: {error.message}", err=True)
    if report.errors:
        click.echo("Nothing was imported: fix the lines above and run again.", err=True)
        sys.exit(1)
    click.echo(report.describe())


@click.command("issue-token")
@with_appcontext
@click.argument("email")
def issue_token(email: str) -> None:
    """Print a client JWT for the user with EMAIL (for /ws and embedded pages)."""
    session = get_session()
    try:
        issued = api_tokens.issue_client_token(
            session, current_app.config, users.get_by_email(session, email), actor=None
        )
    except DomainError as exc:
        _fail(exc)
    click.echo(issued.token)
    click.echo(f"Expires at {issued.expires_at.isoformat()}.", err=True)


@click.command("create-api-token")
@with_appcontext
@click.argument("name")
@click.option("--owner", "owner_email", help="Admin the token acts as (default: the first).")
def create_api_token(name: str, owner_email: str | None) -> None:
    """Print a new token for the JSON API (shown once; only its hash is stored)."""
    session = get_session()
    try:
        owner = (
            users.get_by_email(session, owner_email) if owner_email else users.first_admin(session)
        )
        _token, secret = api_tokens.create(session, name, owner)
    except DomainError as exc:
        _fail(exc)
    click.echo(secret)


@click.command("export-person")
@with_appcontext
@click.argument("email")
@click.option(
    "-o", "--output", type=click.File("w", encoding="utf-8"), default="-", help="Default: stdout."
)
def export_person(email: str, output) -> None:
    """Print everything Schoolbell holds about the person with EMAIL, as JSON (audited)."""
    try:
        data = privacy.export_by_email(get_session(), None, email)
    except DomainError as exc:
        _fail(exc)
    output.write(privacy.export_json(data))


@click.command("erase-person")
@with_appcontext
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask: erasing cannot be undone.")
def erase_person(email: str, yes: bool) -> None:
    """Erase the person with EMAIL for good: name and e-mail removed everywhere (the audit
    log included), access, devices, tokens, classes and guardian links deleted; their
    receipts stay as anonymous counts (audited)."""
    if not yes:
        click.confirm(f"Erase {email} for good? This cannot be undone", abort=True)
    try:
        erased = privacy.erase_by_email(get_session(), None, email)
    except DomainError as exc:
        _fail(exc)
    # Open tabs close now on every process that shares this broker (Redis); with the
    # in-process broker a running server's tabs close at their next reconnect.
    current_app.extensions["schoolbell.live"].user_disabled(erased.user_id)
    click.echo(f"Erased user {erased.user_id}; the account is now {erased.email}.")


# Announcements, for scripts: the services the API calls, the API's JSON with --json ---
def _fail_coded(exc: DomainError, as_json: bool) -> None:
    """Say what failed with its stable code (JSON: the API's error shape); exit 1."""
    if as_json:
        click.echo(json.dumps({"error": {"code": exc.code, "message": exc.message}}))
    else:
        click.echo(f"Error [{exc.code}]: {exc.message}", err=True)
    sys.exit(1)


def _echo_json(value: dict) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _actor(session, email: str | None) -> User:
    """Whom the command acts as: --as EMAIL, else the oldest administrator."""
    return users.get_by_email(session, email) if email else users.first_admin(session)


def parse_targets(values: tuple[str, ...]) -> audience.AudienceSpec:
    """--to class:7b[:students,guardians] | user:EMAIL | role:ROLE | everyone -> the
    audience (the same service checks as the API's `targets`)."""
    people, classes, roles, everyone = [], [], [], False
    for value in values:
        kind, _, rest = value.partition(":")
        if kind == "everyone" and not rest:
            everyone = True
        elif kind == "user" and rest:
            people.append(rest)
        elif kind == "role" and rest:
            roles.append(users.parse_role(rest))
        elif kind == "class" and rest:
            name, _, who = rest.partition(":")
            parts = [w.strip() for w in who.split(",") if w.strip()] if who else None
            classes.append(audience.parse_class_target(name, parts))
        else:
            raise errors.BAD_CLI_TARGET.error(target=value)
    return audience.AudienceSpec(
        users=tuple(people), classes=tuple(classes), roles=tuple(roles), everyone=everyone
    )


def _moment(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 date-time option (with its time zone: the services refuse others)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise errors.FIELD_NOT_DATETIME.error(field=name) from None


def _reach_note(scheduled: bool) -> str:
    """What happens next to open tabs, which this process may not reach itself."""
    if scheduled:
        return "It goes out at its time (a running server sends it)."
    if current_app.config["BROKER_URL"].startswith(("redis://", "rediss://")):
        return "Open tabs show it now (published through Redis)."
    return (
        "Open tabs get it when they next connect (with the in-process broker this command "
        "cannot reach the server's sockets); pushes and e-mails follow as usual."
    )


@click.command("send")
@with_appcontext
@click.option("--as", "as_email", required=True, help="The sender's e-mail (an admin or teacher).")
@click.option("--title", required=True)
@click.option("--body", required=True, help="Markdown; '-' reads it from standard input.")
@click.option(
    "--to",
    "targets",
    multiple=True,
    required=True,
    help="class:7b[:students,guardians,teachers], user:EMAIL, role:ROLE or everyone; repeat.",
)
@click.option("--priority", type=click.Choice([p.value for p in Priority]), default="normal")
@click.option("--require-ack", is_flag=True, help="Ask recipients to confirm.")
@click.option("--send-at", help="Send later: an ISO 8601 time with its zone.")
@click.option("--expires-at", help="Stop showing it then: an ISO 8601 time with its zone.")
@click.option("--link", help="A link shown with it.")
@click.option("--idempotency-key", help="Running again with the same key sends nothing new.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def send(
    as_email: str,
    title: str,
    body: str,
    targets: tuple[str, ...],
    priority: str,
    require_ack: bool,
    send_at: str | None,
    expires_at: str | None,
    link: str | None,
    idempotency_key: str | None,
    as_json: bool,
) -> None:
    """Send an announcement (as POST /api/v1/notifications does), then publish it."""
    from .api import schemas
    from .realtime.live import live

    session = get_session()
    try:
        draft = notifications.Draft(
            title=title,
            body=sys.stdin.read() if body == "-" else body,
            priority=priority,
            require_ack=require_ack,
            expires_at=_moment(expires_at, "expires_at"),
            link=link,
            audience=parse_targets(targets),
            send_at=_moment(send_at, "send_at"),
        )
        prepared = notifications.prepare(
            session, _actor(session, as_email), draft, idempotency_key=idempotency_key
        )
        result = notifications.send(
            session, prepared, delays=reach.Delays.from_config(current_app.config)
        )
    except DomainError as exc:
        _fail_coded(exc, as_json)
    live().publish_sent(result)  # after commit, as the API does
    if as_json:
        _echo_json(schemas.sent_json(result))
        return
    n = result.notification
    verb = "Scheduled" if result.scheduled else "Sent"
    click.echo(f"{verb} announcement {n.id} to {n.recipient_count} recipients.")
    if not result.created:
        click.echo("(Already sent with this idempotency key: nothing new was sent.)")
    click.echo(_reach_note(result.scheduled))


@click.command("list")
@with_appcontext
@click.option("--as", "as_email", help="See what this person may see (default: an admin).")
@click.option("--stage", type=click.Choice([s.value for s in notifications.Stage]))
@click.option("--since", help="Sent (or created) at or after: an ISO 8601 time with its zone.")
@click.option("--limit", type=click.IntRange(1, history.MAX_LIST_LIMIT), default=20)
@click.option("--cursor", type=click.IntRange(1), help="The next page: the cursor printed last.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def list_notifications(
    as_email: str | None,
    stage: str | None,
    since: str | None,
    limit: int,
    cursor: int | None,
    as_json: bool,
) -> None:
    """List announcements, newest first (as GET /api/v1/notifications does)."""
    from .api import schemas

    session = get_session()
    try:
        moment = _moment(since, "since")
        if moment is not None and moment.tzinfo is None:
            raise errors.FIELD_NOT_AWARE.error(field="since")
        filters = history.HistoryFilters(
            stage=notifications.Stage(stage) if stage else None, since=moment
        )
        page = history.listing(
            session, _actor(session, as_email), filters, before=cursor, limit=limit
        )
    except DomainError as exc:
        _fail_coded(exc, as_json)
    cursor_out = None if page.next_before is None else str(page.next_before)
    if as_json:
        _echo_json(
            {
                "notifications": [schemas.listed_json(r) for r in page.rows],
                "next_cursor": cursor_out,
            }
        )
        return
    if not page.rows:
        click.echo("No announcements.")
    for row in page.rows:
        n = row.notification
        when = (n.sent_at or n.send_at or n.created_at).isoformat(timespec="minutes")
        click.echo(
            f"{n.id:>6}  {row.stage.value:<9}  {when}  {n.priority.value:<9}  "
            f"read {row.read}/{n.recipient_count}  {n.title}"
        )
    if cursor_out:
        click.echo(f"More: --cursor {cursor_out}")


@click.command("status")
@with_appcontext
@click.argument("notification_id", type=click.IntRange(1))
@click.option("--as", "as_email", help="As this person sees it (default: an admin).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def notification_status(notification_id: int, as_email: str | None, as_json: bool) -> None:
    """Show an announcement's stage and counts (as GET /api/v1/notifications/ID does)."""
    from .api import schemas

    session = get_session()
    try:
        n = visibility.viewable(session, _actor(session, as_email), notification_id)
    except DomainError as exc:
        _fail_coded(exc, as_json)
    counts, channels = status.counts_by_state_and_channel(session, n.id)
    if as_json:
        _echo_json(schemas.notification_json(n, counts, channels))
        return
    click.echo(f"Announcement {n.id}: {n.title}")
    click.echo(f"Stage: {notifications.stage(n).value}; priority {n.priority.value}")
    click.echo(f"Recipients: {n.recipient_count}")
    click.echo("Receipts: " + ", ".join(f"{state} {count}" for state, count in counts.items()))
    click.echo("Reached by: " + ", ".join(f"{k} {v}" for k, v in channels.as_dict().items()))


@click.command("withdraw")
@with_appcontext
@click.argument("notification_id", type=click.IntRange(1))
@click.option("--as", "as_email", required=True, help="Its author or an admin (audited).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def withdraw(notification_id: int, as_email: str, as_json: bool) -> None:
    """Withdraw a sent announcement, or cancel a scheduled one (as POST .../retract)."""
    from .api import schemas
    from .realtime.live import live

    session = get_session()
    try:
        n, change = withdrawal.withdraw(session, _actor(session, as_email), notification_id)
    except DomainError as exc:
        _fail_coded(exc, as_json)
    if change is not None:
        live().publish_changed(n.id, change)  # after commit
    if as_json:
        counts, channels = status.counts_by_state_and_channel(session, n.id)
        _echo_json(schemas.notification_json(n, counts, channels))
        return
    if change is None:
        click.echo(f"Cancelled announcement {n.id}: it will not go out.")
    else:
        click.echo(f"Withdrew announcement {n.id}.")


@click.command("vapid-keys")
def vapid_keys() -> None:
    """Print a new VAPID key pair: the private key (for SCHOOLBELL_VAPID_PRIVATE_KEY) and
    its public key. Changing the key ends every device's subscription: browsers must
    subscribe again."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from .services import vapid

    key = ec.generate_private_key(ec.SECP256R1())
    click.echo(f"SCHOOLBELL_VAPID_PRIVATE_KEY={vapid.raw_private_key(key)}")
    click.echo(f"Public key: {vapid.raw_public_key(key)}")


@click.command("worker")
def worker() -> None:
    """Run background jobs (pushes, e-mails) in this process until stopped; for
    installations that set SCHOOLBELL_JOBS_IN_PROCESS=false."""
    import os

    # gevent must patch the standard library before anything else is imported, which
    # the flask command has done already: start afresh, patched first.
    os.execv(sys.executable, WORKER_COMMAND)


# gevent.monkey patches everything, then runs the module: nothing (ssl, psycopg,
# redis, requests) is imported unpatched, not even by the `webapp` package itself.
WORKER_COMMAND = [sys.executable, "-m", "gevent.monkey", "--module", "webapp.worker"]


def init_app(app: Flask) -> None:
    """Register the commands."""
    app.cli.add_command(db_cli)
    for command in (
        create_admin,
        seed_demo,
        import_roster,
        issue_token,
        create_api_token,
        export_person,
        erase_person,
        vapid_keys,
        worker,
        send,
        list_notifications,
        notification_status,
        withdraw,
    ):
        app.cli.add_command(command)
