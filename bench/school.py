"""A Schoolbell school for the benchmark: a fresh SQLite database with N students.

Built in the orchestrator with the app's own code: migrations, one bulk insert of the
students (sharing one password hash: they never sign in), an admin with a password (for
the compose preview) and an API token, one client JWT per student, signed with the
same secret the server gets, and STAFF teachers who sign in all at once (sharing one
password; each sign-in still verifies a full Argon2id hash).
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from processes import ROOT

sys.path.insert(0, str(ROOT))

JWT_TTL_S = 4 * 3600  # longer than any run, reconnects included
ADMIN_EMAIL = "admin@school.test"
STAFF = 100  # the sign-in storm: a staff meeting, a class and its teachers at 8:00
BODY = "Fire drill at **10:00**: leave by the nearest exit and meet your class in the yard."


@dataclass
class School:
    """What the server, the load generator and the orchestrator need to know."""

    app: object  # the Flask app, bound to the same database, for work while the server is down
    database_url: str
    secret_key: str
    jwt_secret: str
    api_token: str
    admin_id: int
    admin_password: str
    staff_password: str
    student_ids: list[int]
    tokens_file: Path
    push_origin: str | None = None  # the stand-in push service, for the push phase

    def server_env(self, n: int) -> dict[str, str]:
        """SCHOOLBELL_* settings for gunicorn: this database and secrets, limits raised."""
        room = str(n + 1000)
        return {
            "SCHOOLBELL_ENV": "production",
            "SCHOOLBELL_DATABASE_URL": self.database_url,
            "SCHOOLBELL_SECRET_KEY": self.secret_key,
            "SCHOOLBELL_JWT_SECRET": self.jwt_secret,
            "SCHOOLBELL_WS_MAX_CONNECTIONS": room,
            "SCHOOLBELL_WS_MAX_PER_USER": room,
        } | (
            {
                "SCHOOLBELL_PUSH_ALLOWED_ORIGINS": self.push_origin,
                "SCHOOLBELL_VAPID_SUBJECT": "mailto:bench@school.test",
            }
            if self.push_origin
            else {}
        )

    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}", "Content-Type": "application/json"}


def build(workdir: Path, n: int) -> School:
    """Create, migrate and fill a fresh database in `workdir`; mint N client tokens."""
    from sqlalchemy import insert, select

    from webapp import create_app, migrate, passwords
    from webapp.db import session_scope
    from webapp.models import Role, User
    from webapp.services import api_tokens

    database_url = f"sqlite:///{workdir / 'bench.db'}"
    secret_key, jwt_secret = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    app = create_app(
        {"DATABASE_URL": database_url, "SECRET_KEY": secret_key, "JWT_SECRET": jwt_secret}
    )
    migrate.upgrade(database_url)
    admin_password, staff_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    with app.app_context(), session_scope(app) as session:
        shared_hash = passwords.hash(secrets.token_urlsafe(16))
        staff_hash = passwords.hash(staff_password)
        session.execute(
            insert(User),
            [
                {
                    "email": ADMIN_EMAIL,
                    "name": "Bench Admin",
                    "role": Role.ADMIN,
                    "password_hash": passwords.hash(admin_password),
                    "active": True,
                    "session_epoch": 0,
                }
            ]
            + [
                {
                    "email": f"student{i}@school.test",
                    "name": f"Student {i}",
                    "role": Role.STUDENT,
                    "password_hash": shared_hash,
                    "active": True,
                    "session_epoch": 0,
                }
                for i in range(n)
            ]
            + [
                {
                    "email": staff_email(i),
                    "name": f"Teacher {i}",
                    "role": Role.TEACHER,
                    "password_hash": staff_hash,
                    "active": True,
                    "session_epoch": 0,
                }
                for i in range(STAFF)
            ],
        )
        session.commit()
        admin = session.scalar(select(User).where(User.email == ADMIN_EMAIL))
        student_ids = list(
            session.scalars(select(User.id).where(User.role == Role.STUDENT).order_by(User.id))
        )
        _token, api_token = api_tokens.create(session, "bench", admin)
        admin_id = admin.id
    tokens_file = workdir / "tokens.json"
    mint_tokens(app, student_ids, tokens_file)
    return School(
        app,
        database_url,
        secret_key,
        jwt_secret,
        api_token,
        admin_id,
        admin_password,
        staff_password,
        student_ids,
        tokens_file,
    )


def mint_tokens(app, user_ids: list[int], path: Path) -> None:
    """One client JWT per user, in the order of `user_ids`, written as a JSON list."""
    from webapp.tokens import issue_client_token

    config = app.config
    tokens = [
        issue_client_token(
            uid,
            secret=config["JWT_SECRET"],
            issuer=config["JWT_ISSUER"],
            audience=config["JWT_AUDIENCE"],
            ttl_s=JWT_TTL_S,
        ).token
        for uid in user_ids
    ]
    path.write_text(json.dumps(tokens))


def send_request(base_url: str, school: School, seq: int, targets: dict | None = None) -> dict:
    """The real send path: POST /api/v1/notifications to everyone (or `targets`)."""
    body = {"title": f"bench #{seq}", "body": BODY, "targets": targets or {"everyone": True}}
    return {
        "method": "POST",
        "url": base_url + "/api/v1/notifications",
        "headers": school.api_headers(),
        "body": json.dumps(body),
    }


def api_call(base_url: str, school: School, method: str, path: str, body: dict) -> tuple:
    """One JSON API request with the school's token: (status, decoded body)."""
    request = urllib.request.Request(
        base_url + path, method=method, data=json.dumps(body).encode(), headers=school.api_headers()
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def send_while_down(school: School) -> int:
    """Send an announcement to everyone with the app's service while no server runs
    (as a second worker or the CLI would); clients can only get it by replay."""
    from webapp.db import session_scope
    from webapp.models import User
    from webapp.services import audience, notifications

    with school.app.app_context(), session_scope(school.app) as session:
        admin = session.get(User, school.admin_id)
        draft = notifications.Draft(
            title="bench catch-up", body=BODY, audience=audience.AudienceSpec(everyone=True)
        )
        prepared = notifications.prepare(session, admin, draft)
        return notifications.send(session, prepared).notification.id


def signin_page(base_url: str):
    """Load the sign-in page like a browser: (opener keeping cookies, its cookie jar, the
    form's CSRF token)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base_url + "/signin", timeout=10).read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    if token is None:
        raise RuntimeError("no csrf_token on /signin")
    return opener, jar, token.group(1)


def cookie_header(jar) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def sign_in(base_url: str, password: str) -> tuple[str, str]:
    """Sign the admin in like a browser; return (Cookie header, CSRF token) for htmx
    requests such as the compose preview."""
    opener, jar, token = signin_page(base_url)
    form = urllib.parse.urlencode(
        {"csrf_token": token, "email": ADMIN_EMAIL, "password": password, "next": ""}
    ).encode()
    opener.open(base_url + "/signin", data=form, timeout=10).read()
    page = opener.open(base_url + "/notifications/new", timeout=10).read().decode()
    csrf = re.search(r'"X-CSRFToken": "([^"]+)"', page)
    if csrf is None:
        raise RuntimeError("sign-in failed: no CSRF token on the compose page")
    return cookie_header(jar), csrf.group(1)


def staff_email(i: int) -> str:
    return f"teacher{i}@school.test"


def signin_storm(base_url: str, school: School) -> list[dict]:
    """STAFF sign-in requests, each with the cookie and CSRF token of its own freshly
    loaded sign-in page, ready to be sent at once."""
    forms = []
    for i in range(STAFF):
        _opener, jar, token = signin_page(base_url)
        form = {"csrf_token": token, "email": staff_email(i), "password": school.staff_password}
        forms.append(
            {
                "method": "POST",
                "url": base_url + "/signin",
                "headers": {
                    "Cookie": cookie_header(jar),
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                "body": urllib.parse.urlencode(form),
            }
        )
    return forms


def preview_probe(base_url: str, cookie: str, csrf: str) -> dict:
    """The compose page's live preview (with the recipient count of the whole school)."""
    form = {"title": "Preview", "body": BODY, "priority": "normal", "everyone": "1"}
    return {
        "name": "preview",
        "method": "POST",
        "url": base_url + "/notifications/preview",
        "headers": {
            "Cookie": cookie,
            "X-CSRFToken": csrf,
            "HX-Request": "true",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        "body": urllib.parse.urlencode(form),
    }


def add_devices(school: School, subscriptions: list[dict]) -> int:
    """One guardian per subscription, none with a tab: each has that one device (the
    push phase). Returns how many."""
    from sqlalchemy import insert, select

    from webapp.db import session_scope, utcnow
    from webapp.models import PushSubscription, Role, User

    with school.app.app_context(), session_scope(school.app) as session:
        session.execute(
            insert(User),
            [
                {
                    "email": f"guardian{i}@school.test",
                    "name": f"Guardian {i}",
                    "role": Role.GUARDIAN,
                    "active": True,
                    "session_epoch": 0,
                }
                for i in range(len(subscriptions))
            ],
        )
        ids = session.scalars(
            select(User.id).where(User.role == Role.GUARDIAN).order_by(User.id)
        ).all()
        now = utcnow()
        session.execute(
            insert(PushSubscription),
            [
                {
                    "user_id": user_id,
                    "endpoint": sub["endpoint"],
                    "p256dh": sub["keys"]["p256dh"],
                    "auth": sub["keys"]["auth"],
                    "created_at": now,
                    "failures": 0,
                }
                for user_id, sub in zip(ids, subscriptions, strict=True)
            ],
        )
        session.commit()
    return len(ids)


def push_jobs(school: School, notification_id: int) -> dict[str, int]:
    """The push jobs of one announcement, by state (read from the database)."""
    from sqlalchemy import func, select

    from webapp.db import session_scope
    from webapp.models import Job

    with school.app.app_context(), session_scope(school.app) as session:
        return {
            state.value: n
            for state, n in session.execute(
                select(Job.state, func.count())
                .where(Job.notification_id == notification_id, Job.kind == "push")
                .group_by(Job.state)
            )
        }
