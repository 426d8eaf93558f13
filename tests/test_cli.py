"""The `flask` commands an administrator runs: create-admin, seed-demo, tokens."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from webapp import tokens
from webapp.db import get_session, utcnow
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


# --- announcements: send, list, status, withdraw (what an admin scripts) ----------------


@pytest.fixture
def school(app):
    """build_school's people and classes (no passwords: faster)."""
    from . import school as school_module

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(school_module, "SIGN_IN_HANDLES", frozenset())
        return school_module.build_school(app)


def api_get(app, school, path: str) -> dict:
    response = app.test_client().get(
        "/api/v1" + path, headers={"Authorization": f"Bearer {school.api_token}"}
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def sent_id(result) -> int:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["id"]


def test_send_reaches_the_audience_and_says_so(app, cli, school):
    result = cli(
        "send", "--as", "admin@school.test", "--title", "Trip", "--body", "Bring **lunch**",
        "--to", "class:7b:students,guardians", "--to", "user:t7a@school.test",
        "--priority", "urgent", "--require-ack",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    found = re.match(r"Sent announcement (\d+) to 7 recipients\.\n", result.stdout)
    assert found, result.stdout
    assert "Open tabs get it when they next connect" in result.stdout  # in-process broker
    shown = api_get(app, school, f"/notifications/{found[1]}")
    assert (shown["title"], shown["priority"], shown["require_ack"]) == ("Trip", "urgent", True)
    assert shown["body_html"] == "<p>Bring <strong>lunch</strong></p>"
    assert shown["counts"]["pending"] == 7


def test_send_json_is_the_apis_and_reads_the_body_from_stdin(app, cli, school):
    result = cli(
        "send", "--as", "t7b@school.test", "--title", "Homework", "--body", "-",
        "--to", "class:7b", "--json", input="Page 12.\n",
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    body = json.loads(result.stdout)
    assert body == {"id": body["id"], "recipient_count": 3, "stage": "sent", "send_at": None}
    assert api_get(app, school, f"/notifications/{body['id']}")["body"] == "Page 12."


@pytest.mark.parametrize(
    ("sender", "to", "code"),
    [
        ("t7a@school.test", "class:7b", "audience_forbidden"),  # not their class
        ("t7a@school.test", "everyone", "audience_forbidden"),  # admins only
        ("s7b_1@school.test", "class:7b", "not_a_sender"),
        ("nobody@school.test", "class:7b", "user_not_found"),
        ("admin@school.test", "class:9z", "class_not_found"),
        ("admin@school.test", "class:7b:pets", "invalid_audience"),
        ("admin@school.test", "room:12", "validation_failed"),
        ("admin@school.test", "role:wizard", "invalid_role"),
    ],
)
def test_send_refusals_exit_1_with_the_code(app, cli, school, sender, to, code):
    args = ["send", "--as", sender, "--title", "T", "--body", "B", "--to", to]
    result = cli(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error [{code}]: ")
    result = cli(*args, "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["error"]["code"] == code
    assert api_get(app, school, "/notifications")["notifications"] == []


def test_list_shows_newest_first_with_stages_and_pages(app, cli, school):
    send = ("send", "--as", "admin@school.test", "--body", "B", "--json")
    first = sent_id(cli(*send, "--title", "First", "--to", "class:7a"))
    later = (utcnow() + timedelta(hours=2)).isoformat()
    scheduled = sent_id(cli(*send, "--title", "Later", "--to", "role:teacher", "--send-at", later))
    result = cli("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        [str(scheduled), "scheduled"],
        [str(first), "sent"],
    ]
    assert lines[1].endswith("read 0/3  First")
    only = json.loads(cli("list", "--stage", "scheduled", "--json").stdout)
    assert [n["id"] for n in only["notifications"]] == [scheduled] and only["next_cursor"] is None
    page = json.loads(cli("list", "--limit", "1", "--json").stdout)
    assert [n["id"] for n in page["notifications"]] == [scheduled]
    assert cli("list", "--limit", "1").stdout.endswith(f"More: --cursor {scheduled}\n")
    rest = json.loads(cli("list", "--cursor", page["next_cursor"], "--json").stdout)
    assert [n["id"] for n in rest["notifications"]] == [first]
    # What a teacher sees (services/visibility): not the admin's announcement to 7a.
    assert cli("list", "--as", "t7b@school.test").stdout == "No announcements.\n"
    assert cli("list", "--since", "2026-01-01T08:00").exit_code == 1  # which 08:00?


def test_status_json_is_what_the_api_says(app, cli, school):
    n = sent_id(cli("send", "--as", "admin@school.test", "--title", "Hi", "--body", "B",
                    "--to", "class:7b:guardians", "--json"))  # fmt: skip
    assert json.loads(cli("status", str(n), "--json").stdout) == api_get(
        app, school, f"/notifications/{n}"
    )
    text = cli("status", str(n)).stdout
    assert f"Announcement {n}: Hi\nStage: sent; priority normal\nRecipients: 3\n" in text
    assert "pending 3, delivered 0, read 0, acknowledged 0" in text
    result = cli("status", str(n), "--as", "t7a@school.test")  # not theirs to see
    assert result.exit_code == 1
    assert result.stderr == f"Error [notification_not_found]: No announcement with id {n}.\n"


def test_withdraw_then_again(app, cli, school):
    n = sent_id(cli("send", "--as", "t7b@school.test", "--title", "Oops", "--body", "B",
                    "--to", "class:7b", "--json"))  # fmt: skip
    refused = cli("withdraw", str(n), "--as", "t7a@school.test")
    assert refused.exit_code == 1 and refused.stderr.startswith("Error [notification_not_found]")
    result = cli("withdraw", str(n), "--as", "admin@school.test")
    assert (result.exit_code, result.stdout) == (0, f"Withdrew announcement {n}.\n")
    assert api_get(app, school, f"/notifications/{n}")["stage"] == "withdrawn"
    again = cli("withdraw", str(n), "--as", "admin@school.test", "--json")
    assert again.exit_code == 1
    assert json.loads(again.stdout)["error"]["code"] == "already_withdrawn"
    audited = scalar(app, select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "notification.withdrawn"))  # fmt: skip
    assert audited == 1


def test_a_cli_send_beside_a_server_reaches_open_tabs(
    app, cli, database_url, school, live_server_factory, redis_server
):
    """With Redis the command publishes, and open tabs show it at once; with the
    in-process broker it cannot reach the server's sockets: a tab gets it when it
    next connects (replay)."""
    from .school import Api
    from .wsclient import WSClient

    redis = redis_server
    server = live_server_factory(database_url, BROKER_URL=redis.url)
    api = Api(server.url, school.api_token)
    tab = WSClient(server.url, token=api.client_token("s7b_1@school.test")).connect()
    tab.hello()
    tab.send_json({"type": "resume", "last_id": None})
    # Once this has come, the tab's replay is over: what follows can only come live.
    warm_up = api.send("Warm-up", targets={"classes": [{"name": "7b"}]})
    assert tab.expect("notification")["id"] == warm_up["id"]
    cli_app = make_test_app(database_url, app.instance_path, BROKER_URL=redis.url)
    result = cli_for(cli_app)(
        "send", "--as", "admin@school.test", "--title", "Now", "--body", "B", "--to", "class:7b"
    )
    assert "Open tabs show it now" in result.stdout, result.output
    assert tab.expect("notification", timeout=3)["title"] == "Now"

    # The in-process broker: nothing live, but the next connect replays it.
    result = cli(
        "send", "--as", "admin@school.test", "--title", "Later", "--body", "B", "--to", "class:7b"
    )
    assert result.exit_code == 0, result.output
    assert tab.nothing_within(1.0)
    again = WSClient(server.url, token=api.client_token("s7b_1@school.test")).connect()
    again.hello()
    again.send_json({"type": "resume", "last_id": None})
    assert [m["title"] for m in again.notifications(3)] == ["Warm-up", "Now", "Later"]
