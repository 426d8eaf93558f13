"""The `flask` commands an administrator runs: create-admin, seed-demo, tokens."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import func, select

from webapp import tokens
from webapp.db import get_session
from webapp.models import AuditEvent, Guardianship, MemberRole, Membership, Role, SchoolClass, User
from webapp.services import classes as classes_service

from .conftest import AuthActions, make_test_app

EXAMPLE_SIGNIN = re.compile(r"^\s+(.+?)\s+(\S+@\S+)\s+(\S+)$", re.MULTILINE)


def cli_for(app):
    """Run `flask <args>`; each run gets its own app context, as `flask` gives it."""
    runner = app.test_cli_runner()

    def invoke(*args, input=None):
        # The commands are plain click commands: `flask` (FlaskGroup) pushes the app
        # context for them, FlaskCliRunner.invoke does not.
        with app.app_context():
            return runner.invoke(args=list(args), input=input)

    return invoke


@pytest.fixture
def cli(app):
    return cli_for(app)


def scalar(app, stmt):
    with app.app_context():
        return get_session().scalar(stmt)


def count(app, model, *where) -> int:
    return scalar(app, select(func.count()).select_from(model).where(*where))


# --- create-admin ---------------------------------------------------------------------


def test_create_admin_with_password_option(cli, auth):
    result = cli("create-admin", "Head@School.test", "--password", "long enough pw")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Created administrator head@school.test.\n"
    r = auth.signin("head@school.test", "long enough pw")
    assert r.status_code == 302 and r.headers["Location"] == "/dashboard"


def test_create_admin_prompts_for_the_password_twice(cli, auth):
    result = cli(
        "create-admin",
        "head@school.test",
        "--name",
        "Hana Head",
        input="typo password\nother password\nlong enough pw\nlong enough pw\n",
    )
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    assert "long enough pw" not in result.output  # hidden input is not echoed
    assert auth.signin("head@school.test", "long enough pw").status_code == 302


def test_create_admin_refuses_a_weak_password(app, cli):
    result = cli("create-admin", "head@school.test", "--password", "short")
    assert result.exit_code == 1
    assert result.stderr == "Error: Passwords need at least 8 characters.\n"
    assert count(app, User) == 0


def test_create_admin_refuses_a_taken_email(cli, make_user):
    make_user("teacher", email="head@school.test")
    result = cli("create-admin", "head@school.test", "--password", "long enough pw")
    assert result.exit_code == 1
    assert "already exists" in result.stderr


# --- seed-demo ------------------------------------------------------------------------


@pytest.fixture
def demo_app(any_database_url, tmp_path):
    """An empty app on each backend: the demo uses bulk inserts, which differ by driver."""
    app = make_test_app(any_database_url, tmp_path)
    yield app
    app.extensions["schoolbell.db"].kw["bind"].dispose()


def test_seed_demo_loads_a_school(demo_app):
    started = time.monotonic()
    result = cli_for(demo_app)("seed-demo")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert elapsed < 5, f"seed-demo took {elapsed:.1f} s"
    assert "150 students" in result.stdout and "200 guardians" in result.stdout

    def users(role):
        return count(demo_app, User, User.role == role)

    assert (users(Role.ADMIN), users(Role.TEACHER)) == (1, 8)
    assert 140 <= users(Role.STUDENT) <= 160
    assert 180 <= users(Role.GUARDIAN) <= 220
    assert count(demo_app, AuditEvent, AuditEvent.action == "demo.seeded") == 1
    with demo_app.app_context():
        session = get_session()
        rows = classes_service.list_with_counts(session)
        assert [c.name for c, _, _ in rows] == ["5a", "5b", "6a", "6b", "7a", "7b"]
        assert all(20 <= students <= 30 and teachers >= 1 for _, students, teachers in rows)
        classes_per_student = session.scalars(
            select(func.count(Membership.id))
            .select_from(User)
            .outerjoin(Membership)
            .where(User.role == Role.STUDENT)
            .group_by(User.id)
        )
        assert set(classes_per_student) == {1}
        guardians_per_student = session.scalars(
            select(func.count(Guardianship.id))
            .select_from(User)
            .outerjoin(Guardianship, Guardianship.student_id == User.id)
            .where(User.role == Role.STUDENT)
            .group_by(User.id)
        )
        assert set(guardians_per_student) == {1, 2}
        unteaching = session.scalar(
            select(func.count())
            .select_from(User)
            .where(
                User.role == Role.TEACHER,
                ~User.id.in_(
                    select(Membership.user_id).where(Membership.role == MemberRole.TEACHER)
                ),
            )
        )
        assert unteaching == 0


def test_demo_sign_ins_work(app, cli, client):
    result = cli("seed-demo")
    examples = {
        who: (email, password) for who, email, password in EXAMPLE_SIGNIN.findall(result.stdout)
    }
    assert examples["administrator"] == ("admin@school.test", "admin-demo-pass")
    assert len(examples) == 4
    teacher, _ = examples["teacher of 7b"]
    student, _ = examples["student in 7b"]
    with app.app_context():
        session = get_session()
        for email in (teacher, student):
            user = session.scalar(select(User).where(User.email == email))
            assert "7b" in [c.name for c, _ in classes_service.classes_of(session, user.id)]
    auth = AuthActions(client)
    for who, (email, password) in examples.items():
        r = auth.signin(email, password)
        home = "/dashboard" if who in ("administrator", "teacher of 7b") else "/inbox"
        assert (r.status_code, r.headers.get("Location")) == (302, home), who
        auth.signout()


def test_seed_demo_refuses_a_database_with_users(app, cli, make_user):
    make_user("admin")
    result = cli("seed-demo")
    assert result.exit_code == 1
    assert "already has users" in result.stderr
    assert count(app, User) == 1 and count(app, SchoolClass) == 0


def test_seed_demo_if_empty_leaves_a_real_school_alone(app, cli, make_user):
    make_user("admin", email="head@real-school.test")
    result = cli("seed-demo", "--if-empty")
    assert result.exit_code == 0
    assert "demo school was not loaded" in result.stdout
    assert "demo-pass" not in result.stdout
    assert count(app, User) == 1


def test_seed_demo_if_empty_twice_loads_once(app, cli):
    assert cli("seed-demo", "--if-empty").exit_code == 0
    loaded = count(app, User)
    second = cli("seed-demo", "--if-empty")
    assert second.exit_code == 0
    # `make run` runs this every time: it still shows how to sign in.
    assert second.stdout.startswith("The demo school is already loaded.\n")
    assert "admin@school.test" in second.stdout and "admin-demo-pass" in second.stdout
    assert count(app, User) == loaded
    assert count(app, AuditEvent, AuditEvent.action == "demo.seeded") == 1


# --- tokens ---------------------------------------------------------------------------


def test_issue_token_prints_a_valid_jwt(app, cli, make_user):
    ann = make_user("student", email="ann@school.test")
    result = cli("issue-token", "ANN@school.test")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert (
        tokens.verify_client_token(
            token,
            secret=app.config["JWT_SECRET"],
            issuer=app.config["JWT_ISSUER"],
            audience=app.config["JWT_AUDIENCE"],
        )
        == ann.id
    )
    assert result.stderr.startswith("Expires at ")
    assert count(app, AuditEvent, AuditEvent.action == "client_token.issued") == 1


@pytest.mark.parametrize(("active", "message"), [(None, "No user"), (False, "deactivated")])
def test_issue_token_refuses_unknown_or_inactive_users(cli, make_user, active, message):
    if active is not None:
        make_user("student", email="ann@school.test", active=active)
    result = cli("issue-token", "ann@school.test")
    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stdout == ""


def test_create_api_token_works_on_the_api(cli, client, make_user):
    make_user("admin", email="head@school.test")
    result = cli("create-api-token", "timetable sync")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith(tokens.API_TOKEN_PREFIX)
    r = client.get("/api/v1/users/head@school.test", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.get_json()["email"] == "head@school.test"


def test_create_api_token_needs_an_admin(cli, make_user):
    assert "no administrator yet" in cli("create-api-token", "sync").stderr
    make_user("teacher", email="tom@school.test")
    result = cli("create-api-token", "sync", "--owner", "tom@school.test")
    assert result.exit_code == 1
    assert "act as an administrator" in result.stderr
