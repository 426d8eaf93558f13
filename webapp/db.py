"""Database plumbing: the declarative Base, the engine, and sessions.

Services receive a `Session` and own their transaction. Views get the request's from
`get_session()`, closed when the app context ends. Everything else opens a short-lived
`session_scope()` of its own: a socket's database work (user lookup, replay, receipt
checks, watched topics), which runs in short-lived greenlets with an app context of their
own (`realtime/greenlets.py: in_short_greenlet`), the receipt writer's batches, status pushes. So an
idle socket holds no session and no connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from flask import Flask, current_app, g
from sqlalchemy import DateTime, Integer, MetaData, bindparam, create_engine, event, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.expression import TableValuedAlias
from sqlalchemy.types import TypeDecorator
from werkzeug.routing import IntegerConverter

MAX_ID = 2**31 - 1  # ids are 32-bit INTEGER columns: larger numbers cannot name anything

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every model; constraint names follow NAMING_CONVENTION."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp on every backend (SQLite stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware UTC value")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


LIKE_ESCAPE = "\\"


def integer_rows(session: Session, ids: Sequence[int]) -> TableValuedAlias:
    """`ids` as a table with one integer column `value`, sent as one parameter (a JSON
    array for SQLite, an array for PostgreSQL): lets INSERT ... SELECT write thousands of
    rows in one statement, with no per-row work in Python."""
    if session.get_bind().dialect.name == "postgresql":
        values = bindparam("ids", list(ids), type_=ARRAY(Integer))
        return func.unnest(values).table_valued("value").render_derived()
    return func.json_each(json.dumps(list(ids))).table_valued("value")


def contains_pattern(text: str) -> str:
    """A LIKE pattern for "contains `text`", with % and _ typed by people taken literally
    (use with `.like(pattern, escape=LIKE_ESCAPE)`)."""
    for char in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(char, LIKE_ESCAPE + char)
    return f"%{text}%"


def make_engine(url: str, sqlite_busy_timeout_ms: int = 5000) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and enforced foreign keys."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # One connection per greenlet/thread; the file is shared through WAL.
        kwargs = {"connect_args": {"timeout": sqlite_busy_timeout_ms / 1000}}
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, sqlite_busy_timeout_ms)
    return engine


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """Per connection: WAL journal, busy timeout, foreign keys, and real BEGIN."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit transactions are broken).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # IMMEDIATE takes the write lock up front, so a read-then-write transaction
        # waits (busy timeout) instead of failing with "database is locked".
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class IdConverter(IntegerConverter):
    """`<id:...>` in routes: a row id. Larger numbers (no such row can exist) are a 404
    here instead of an "integer out of range" error from PostgreSQL."""

    def __init__(self, url_map, *args, **kwargs):
        super().__init__(url_map, min=1, max=MAX_ID)


def init_app(app: Flask) -> None:
    """Create the app's engine and session factory, and close sessions at teardown."""
    app.url_map.converters["id"] = IdConverter
    engine = make_engine(app.config["DATABASE_URL"], app.config["SQLITE_BUSY_TIMEOUT_MS"])
    app.extensions["schoolbell.db"] = sessionmaker(bind=engine, expire_on_commit=False)
    app.teardown_appcontext(_close_session)


def engine() -> Engine:
    """The current app's engine."""
    return current_app.extensions["schoolbell.db"].kw["bind"]


def get_session() -> Session:
    """The session of the current request / app context, opened on first use."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["schoolbell.db"]()
    return g.db_session


@contextmanager
def session_scope(app: Flask | None = None) -> Iterator[Session]:
    """A short-lived session of its own (a socket's database work, a receipt batch, a
    status push), always closed."""
    factory = (app or current_app).extensions["schoolbell.db"]
    session = factory()
    try:
        yield session
    finally:
        session.close()


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
