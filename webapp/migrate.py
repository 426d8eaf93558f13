"""Alembic, driven from the app: migrations live in migrations/, the URL in the config."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from . import ROOT


def alembic_config(database_url: str) -> Config:
    """An Alembic Config for migrations/ and this database (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)


def check(database_url: str) -> None:
    """Raise if the models and the migrated database differ (alembic check)."""
    command.check(alembic_config(database_url))


def revision(database_url: str, message: str) -> None:
    """Autogenerate a new migration from the difference between models and database."""
    command.revision(alembic_config(database_url), message=message, autogenerate=True)
