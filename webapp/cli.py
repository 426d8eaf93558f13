"""Command line: `flask --app wsgi <command>`. Each command calls one service."""

from __future__ import annotations

import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from . import migrate
from .db import get_session
from .errors import DomainError
from .models import Role
from .services import api_tokens, privacy, roster_import, users

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
    ):
        app.cli.add_command(command)
