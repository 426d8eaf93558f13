"""Test databases: a migrated SQLite file per test, or a fresh PostgreSQL database.

Tests that need PostgreSQL fail (not skip) when CI=true and the server is missing.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from webapp import migrate

PG_ADMIN_URL = os.environ.get(
    "SCHOOLBELL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def require_service(name: str, error: Exception) -> None:
    """Fail under CI=true, skip elsewhere, when a service a test needs is missing."""
    message = f"{name} is not reachable: {error}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: tests that need it must not be skipped)")
    pytest.skip(message)


def migrated_sqlite_template(directory: Path) -> Path:
    """Migrate an empty SQLite file to head once; tests copy it."""
    path = directory / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def sqlite_copy(template: Path, directory: Path) -> str:
    """A private copy of the migrated template; returns its URL."""
    path = directory / f"{uuid.uuid4().hex}.db"
    shutil.copy(template, path)
    return f"sqlite:///{path}"


class PostgresDatabases:
    """Creates uniquely named databases on the local server and drops them afterwards."""

    def __init__(self, admin_url: str = PG_ADMIN_URL):
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def check(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            require_service("PostgreSQL", exc)

    def create(self, migrated: bool = True) -> str:
        name = f"schoolbell_test_{uuid.uuid4().hex[:12]}"
        with self.engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        url = self.engine.url.set(database=name).render_as_string(hide_password=False)
        if migrated:
            migrate.upgrade(url)
        return url

    def drop_all(self) -> None:
        with self.engine.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.created.clear()
        self.engine.dispose()
