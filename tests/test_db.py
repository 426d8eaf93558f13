"""Migrations match the models on both backends; SQLite runs in WAL with a busy timeout."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.orm import Session

from webapp import migrate
from webapp.db import Base, integer_rows, make_engine
from webapp.models import User


def test_upgrade_head_on_empty_sqlite_matches_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    migrate.upgrade(url)
    migrate.check(url)  # raises if autogenerate would find any difference
    tables = set(inspect(create_engine(url)).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_upgrade_head_on_empty_postgresql_matches_models(postgres):
    url = postgres.create(migrated=False)
    migrate.upgrade(url)
    migrate.check(url)
    engine = make_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_downgrade_to_base_and_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    migrate.upgrade(url)
    from alembic import command

    command.downgrade(migrate.alembic_config(url), "base")
    assert set(inspect(create_engine(url)).get_table_names()) == {"alembic_version"}
    migrate.upgrade(url)
    migrate.check(url)


def test_sqlite_uses_wal_busy_timeout_and_foreign_keys(database_url):
    engine = make_engine(database_url, sqlite_busy_timeout_ms=4321)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 4321
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_timestamps_come_back_timezone_aware(any_database_url):
    engine = make_engine(any_database_url)
    with Session(engine) as session:
        user = User(email="tz@school.test", name="Tz", role="student")
        session.add(user)
        session.commit()
        session.expire_all()
        stored = session.get(User, user.id)
        assert stored.created_at.tzinfo is not None
        assert abs(stored.created_at - datetime.now(UTC)).total_seconds() < 60
        with pytest.raises(Exception, match="naive datetime"):
            stored.updated_at = datetime(2026, 1, 1)
            session.commit()
    engine.dispose()


def test_foreign_keys_are_enforced_on_sqlite(database_url):
    engine = make_engine(database_url)
    with pytest.raises(Exception, match="FOREIGN KEY"), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO memberships (class_id, user_id, role, created_at) "
                "VALUES (999, 999, 'student', '2026-01-01')"
            )
        )
    engine.dispose()


@pytest.mark.parametrize("kind", ["user", "class"])
def test_a_duplicate_inserted_meanwhile_is_a_conflict_not_a_crash(
    any_database_url, tmp_path, monkeypatch, kind
):
    """Two admins create the same email (or class) at once: the loser gets a 409."""
    from webapp.db import get_session
    from webapp.errors import Conflict
    from webapp.services import classes, users

    from .conftest import make_test_app

    app = make_test_app(any_database_url, tmp_path)
    with app.app_context():
        session = get_session()
        users.create(session, None, users.UserInput("ann@school.test", "Ann", "student"))
        classes.create(session, None, "7b")
        # The other request inserted between our look-up and our insert:
        monkeypatch.setattr(users, "by_email", lambda *_: None)
        monkeypatch.setattr(classes, "by_name", lambda *_: None)
        with pytest.raises(Conflict) as refused:
            if kind == "user":
                users.build_user(session, users.UserInput("ann@school.test", "Ann", "student"))
            else:
                classes.build_class(session, "7b")
        assert refused.value.code == f"duplicate_{'email' if kind == 'user' else 'class'}"
        session.rollback()
    app.extensions["schoolbell.db"].kw["bind"].dispose()


def test_integer_rows_carries_a_whole_school_in_one_parameter(any_database_url):
    """The id list behind INSERT ... SELECT: more ids than SQLite's parameter limit,
    in order, as integers."""
    engine = make_engine(any_database_url)
    ids = list(range(1, 40_001))
    with Session(engine) as session:
        rows = integer_rows(session, ids)
        got = session.execute(select(rows.c.value)).scalars().all()
    engine.dispose()
    assert [int(x) for x in got] == ids
