"""A built school on one database and a session on it, for the service tests of
receipts, replay, status and visibility that must hold on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from webapp.db import get_session
from webapp.models import Delivery, DeliveryState, Notification, User
from webapp.services.audience import AudienceSpec, ClassTarget
from webapp.services.notifications import Draft, prepare, send
from webapp.services.receipts import Receipt, record_receipts
from webapp.services.replay import replay_for

from . import school as school_module
from .conftest import make_test_app
from .databases import sqlite_copy
from .school import build_school

T0 = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)
T1, T2, T3 = (T0 + timedelta(minutes=n) for n in (1, 2, 3))
S = DeliveryState


def to_class(name: str, *parts: str) -> AudienceSpec:
    return AudienceSpec(classes=(ClassTarget(name, frozenset(parts or ("students",))),))


class SchoolDb:
    """A school on one database, a session on it, and helpers to send and inspect."""

    def __init__(self, app, school, session):
        self.app, self.school, self.session = app, school, session

    def user(self, handle: str) -> User:
        return self.session.get(User, self.school.ids[handle])

    def id(self, handle: str) -> int:
        return self.school.ids[handle]

    def send(
        self,
        title: str = "Notice",
        *,
        by: str = "admin",
        audience: AudienceSpec | None = None,
        **fields,
    ) -> int:
        draft = replace(
            Draft(
                title=title,
                body="Body",
                audience=audience or to_class("7b", "students", "guardians"),
            ),
            **fields,
        )
        return send(self.session, prepare(self.session, self.user(by), draft)).notification.id

    def delivery(self, notification_id: int, handle: str) -> Delivery:
        """The delivery row as stored now."""
        self.session.expire_all()
        return self.session.scalar(
            select(Delivery).where(
                Delivery.notification_id == notification_id, Delivery.user_id == self.id(handle)
            )
        )

    def receipts(self, *items: tuple[str, int, DeliveryState, datetime]) -> set[int]:
        return record_receipts(
            self.session, [Receipt(self.id(h), n, state, at) for h, n, state, at in items]
        )

    def set_notification(self, notification_id: int, **values) -> None:
        """Change a notification directly in the database (expiry, retraction)."""
        self.session.execute(
            update(Notification).where(Notification.id == notification_id).values(**values)
        )
        self.session.commit()

    def replay(self, handle: str, last_id: int | None, **kwargs) -> list[int]:
        self.session.expire_all()
        return [n.id for n, _ in replay_for(self.session, self.id(handle), last_id, **kwargs)]


def built_school(url: str, directory):
    """An app on `url` with build_school's people (no password hashing: faster)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(school_module, "SIGN_IN_HANDLES", frozenset())
        app = make_test_app(url, directory)
        return app, build_school(app)


def session_on(app, school):
    """A SchoolDb with a session of its own inside an app context."""
    with app.app_context():
        session = get_session()
        yield SchoolDb(app, school, session)
        session.rollback()


def school_on_backend(request, sqlite_template, tmp_path_factory, name: str):
    """For a module-scoped fixture parametrized with "sqlite" and "postgresql": an app
    and its school on that backend (call dispose(app) when done)."""
    directory = tmp_path_factory.mktemp(name)
    if request.param == "sqlite":
        url = sqlite_copy(sqlite_template, directory)
    else:
        url = request.getfixturevalue("postgres").create()
    return built_school(url, directory)


def dispose(app) -> None:
    """Close the app's database connections."""
    app.extensions["schoolbell.db"].kw["bind"].dispose()


def own_school(any_database_url, tmp_path):
    """For a test's own school: a SchoolDb on `any_database_url`, disposed of after."""
    app, school = built_school(any_database_url, tmp_path)
    yield from session_on(app, school)
    dispose(app)
