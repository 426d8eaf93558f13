"""A small school in a test database, a real server in front of it, and its API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from webapp.db import session_scope
from webapp.services import api_tokens, classes, users

from .conftest import PASSWORD
from .wsclient import WSClient

SIGN_IN_HANDLES = {"admin", "t7b", "s7b_1"}


@dataclass
class School:
    """People by handle ("admin", "t7b", "s7b_1", "g7b_1", ...) -> email, and ids."""

    emails: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    api_token: str = ""


def build_school(app, students_per_class: int = 3) -> School:
    """Two classes (7a, 7b), a teacher each, students, one guardian per student, an admin,
    a deactivated student, and an API token acting as the admin."""
    school = School()
    with app.app_context(), session_scope(app) as session:

        def person(handle: str, role: str) -> object:
            # Only a few need to sign in with a password (hashing is slow on purpose).
            password = PASSWORD if handle in SIGN_IN_HANDLES else None
            user = users.create(
                session,
                None,
                users.UserInput(
                    email=f"{handle}@school.test", name=handle.upper(), role=role, password=password
                ),
            )
            school.emails[handle], school.ids[handle] = user.email, user.id
            return user

        admin = person("admin", "admin")
        for name in ("7a", "7b"):
            school_class = classes.create(session, None, name)
            key = name
            teacher = person(f"t{key}", "teacher")
            classes.ensure_member(session, school_class, teacher)
            for n in range(1, students_per_class + 1):
                student = person(f"s{key}_{n}", "student")
                classes.ensure_member(session, school_class, student)
                guardian = person(f"g{key}_{n}", "guardian")
                classes.ensure_guardianship(session, guardian, student)
            session.commit()
        gone = person("gone", "student")
        gone.active = False
        session.commit()
        _token, school.api_token = api_tokens.create(session, "tests", admin)
    return school


class Api:
    """JSON over real HTTP with the school's API token."""

    def __init__(self, base_url: str, token: str):
        self.base_url, self.token = base_url, token

    def call(
        self, method: str, path: str, body: dict | None = None, headers: dict | None = None
    ) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.base_url + "/api/v1" + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def send(
        self, title: str = "Hello", body: str = "Message", *, key: str | None = None, **fields
    ) -> dict:
        """POST /notifications; asserts 201 and returns {id, recipient_count}."""
        headers = {"Idempotency-Key": key} if key else {}
        status, result = self.call(
            "POST", "/notifications", {"title": title, "body": body, **fields}, headers
        )
        assert status == 201, result
        return result

    def client_token(self, email: str) -> str:
        status, result = self.call("POST", "/tokens", {"email": email})
        assert status == 201, result
        return result["token"]


class LiveSchool:
    """The school, its running server, and ways to open tabs as its people."""

    def __init__(self, school: School, server):
        self.school, self.server = school, server
        self.api = Api(server.url, school.api_token)
        self.tabs: list[WSClient] = []

    def tab(self, handle: str, *, resume: int | bool | None = None) -> WSClient:
        """Open a tab as `handle` (JWT in the first message), read hello, then resume
        (from `resume`, or not at all when resume is False)."""
        token = self.api.client_token(self.school.emails[handle])
        client = WSClient(self.server.url).connect()
        self.tabs.append(client)
        client.send_json({"type": "auth", "token": token})
        client.hello()
        if resume is not False:
            client.send_json({"type": "resume", "last_id": resume})
        return client

    def close(self) -> None:
        for tab in self.tabs:
            tab.close()


@dataclass(frozen=True)
class Pupil:
    """One of a crowd: a student with a client JWT and a signed-in session cookie."""

    id: int
    token: str
    cookie: str


def crowd(app, n: int, prefix: str = "pupil") -> list[Pupil]:
    """N students inserted at once (no passwords), each with a client JWT and the session
    cookie a browser holds after signing in (signed with the app's secret key, exactly
    as Flask sets it): for tests that need thousands of signed-in tabs."""
    from sqlalchemy import insert, select

    from webapp import tokens
    from webapp.models import Role, User

    with app.app_context(), session_scope(app) as session:
        session.execute(
            insert(User),
            [
                {
                    "email": f"{prefix}{i}@school.test",
                    "name": f"Pupil {i}",
                    "role": Role.STUDENT,
                    "active": True,
                    "session_epoch": 0,
                }
                for i in range(n)
            ],
        )
        session.commit()
        ids = session.scalars(
            select(User.id).where(User.email.like(f"{prefix}%")).order_by(User.id)
        ).all()
    serializer = app.session_interface.get_signing_serializer(app)
    config = app.config
    return [
        Pupil(
            user_id,
            tokens.issue_client_token(
                user_id,
                secret=config["JWT_SECRET"],
                issuer=config["JWT_ISSUER"],
                audience=config["JWT_AUDIENCE"],
                ttl_s=3600,
            ).token,
            "session=" + serializer.dumps({"_user_id": f"{user_id}:0", "_fresh": False}),
        )
        for user_id in ids
    ]
