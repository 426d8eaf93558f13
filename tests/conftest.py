"""Fixtures in the flaskr style: app, client, runner, auth; plus users, databases, servers."""

from __future__ import annotations

import http.server
import os
import threading
from pathlib import Path

import pytest

from webapp import create_app
from webapp.db import get_session
from webapp.services import users as users_service

from .databases import PostgresDatabases, migrated_sqlite_template, sqlite_copy
from .helpers import post_form
from .server import LiveServer, free_port

TEST_SECRETS = {
    "SECRET_KEY": "test-secret-key-" + "k" * 40,
    "JWT_SECRET": "test-jwt-secret-" + "j" * 40,
}
PASSWORD = "correct horse battery"
ARTIFACTS = Path(
    os.environ.get(
        "SCHOOLBELL_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"
    )
)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """An empty database migrated to head, made once per run."""
    return migrated_sqlite_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def postgres():
    """Creates fresh PostgreSQL databases; fails under CI=true if the server is missing."""
    databases = PostgresDatabases()
    databases.check()
    yield databases
    databases.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request, sqlite_template, tmp_path) -> str:
    """A migrated database URL on each backend, for tests that must hold on both."""
    if request.param == "sqlite":
        return sqlite_copy(sqlite_template, tmp_path)
    return request.getfixturevalue("postgres").create()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_school(request, sqlite_template, tmp_path_factory):
    """(app, school) like `any_database_url` + build_school, once per module and backend.
    Tests that only look at the announcements they send themselves share it (keeps the
    suite fast)."""
    from .school_db import dispose, school_on_backend

    app, school = school_on_backend(
        request, sqlite_template, tmp_path_factory, request.module.__name__.rpartition(".")[2]
    )
    yield app, school
    dispose(app)


@pytest.fixture
def redis_server(tmp_path):
    """A redis-server of this test's own on a free port, stopped after (tests/redis_server.py:
    `.url`, `.kill()`, `.restart()`, `.pause()`; fails under CI=true if it is missing)."""
    from .redis_server import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def database_url(sqlite_template, tmp_path) -> str:
    """A migrated SQLite database of this test's own."""
    return sqlite_copy(sqlite_template, tmp_path)


def make_test_app(database_url: str, instance_path: Path, **overrides):
    """An app for tests: fixed secrets, its own database, CSRF on as in production."""
    config = {"TESTING": True, "DATABASE_URL": database_url, **TEST_SECRETS, **overrides}
    app = create_app(config)
    app.instance_path = str(instance_path)
    return app


@pytest.fixture
def app(database_url, tmp_path):
    app = make_test_app(database_url, tmp_path)
    yield app
    app.extensions["schoolbell.db"].kw["bind"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def db(app):
    """A session on the test app's database, inside an app context."""
    with app.app_context():
        yield get_session()


@pytest.fixture
def make_user(app):
    """Create a user directly through the service: make_user("teacher", email=...)."""
    counter = iter(range(1, 10_000))

    def make(
        role: str = "student",
        *,
        email: str | None = None,
        name: str | None = None,
        password: str | None = PASSWORD,
        active: bool = True,
    ):
        n = next(counter)
        with app.app_context():
            session = get_session()
            user = users_service.create(
                session,
                None,
                users_service.UserInput(
                    email=email or f"{role}{n}@school.test",
                    name=name or f"{role.title()} {n}",
                    role=role,
                    password=password,
                ),
            )
            if not active:
                user.active = False
                session.commit()
            session.expunge(user)
            return user

    return make


class AuthActions:
    """Sign in and out through the real forms, CSRF included."""

    def __init__(self, client):
        self._client = client

    def signin(self, email: str, password: str = PASSWORD, next: str | None = None):
        url = "/signin" + (f"?next={next}" if next else "")
        data = {"email": email, "password": password}
        if next:
            data["next"] = next
        return post_form(self._client, "/signin", data, page=url)

    def signout(self):
        return post_form(self._client, "/signout", {}, page="/inbox")


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def admin(make_user, auth):
    """A signed-in administrator."""
    user = make_user("admin", email="admin@school.test", name="Ada Admin")
    auth.signin(user.email)
    return user


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests save screenshots and logs for people to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def live_server_factory(tmp_path):
    """Start real gunicorn + gevent servers on free ports; all stopped at the end."""
    servers: list[LiveServer] = []

    def start(database_url: str, **env: str) -> LiveServer:
        environment = {
            "SCHOOLBELL_DATABASE_URL": database_url,
            "SCHOOLBELL_SECRET_KEY": TEST_SECRETS["SECRET_KEY"],
            "SCHOOLBELL_JWT_SECRET": TEST_SECRETS["JWT_SECRET"],
            **{f"SCHOOLBELL_{k}": v for k, v in env.items()},
        }
        server = LiveServer(environment, tmp_path / f"gunicorn-{len(servers)}.log")
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


# Browser tests: pytest-playwright drives Debian's Chromium (never a downloaded browser).
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def base_url() -> None:
    """Replaces pytest-playwright's own (pytest 9 warns about it); pages use server.url."""
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: run `make test` (it installs "
            "Debian's chromium) or set CHROMIUM_PATH."
        )
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture
def push_service():
    """A local push service that decrypts every push and checks its VAPID signature."""
    from .push_service import PushService

    service = PushService().start()
    yield service
    service.close()


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on a free port, keeping what it receives."""
    from .smtp_server import SmtpServer

    server = SmtpServer()
    yield server
    server.stop()


@pytest.fixture
def live_school(app, database_url, live_server_factory):
    """A small school behind a real gunicorn + gevent server (see tests/school.py)."""
    from .school import LiveSchool, build_school

    school = build_school(app)
    live = LiveSchool(school, live_server_factory(database_url))
    yield live
    live.close()


@pytest.fixture
def other_app():
    """A static page server on its own port: another origin, like the school's timetable."""
    pages: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", pages
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _close_websockets():
    """No WebSocket client outlives the test that opened it."""
    yield
    from .wsclient import close_all

    close_all()


@pytest.fixture
def console_errors(page) -> list[str]:
    """Errors the page logs (a CSP violation shows up here) and uncaught exceptions; each
    browser test expects none (see tests/browser.py)."""
    from .browser import watch_console

    return watch_console(page)


def pytest_sessionstart(session):
    """The compiled catalogues are build products (`make` keeps them fresh): compile any
    that is missing or older than its .po, so a bare `pytest` tests the German too."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    for po in root.glob("webapp/translations/*/LC_MESSAGES/messages.po"):
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            subprocess.run(["make", "-s", "-C", str(root), "compile-translations"], check=True)
            return
