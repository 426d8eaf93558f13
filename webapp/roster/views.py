"""Roster views (placeholder until the roster pages land)."""

from . import bp


@bp.get("/users")
def users():
    return "users"


@bp.get("/classes")
def classes():
    return "classes"


@bp.get("/import")
def import_roster():
    return "import"
