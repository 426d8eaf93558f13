"""The privacy page, for everyone (signed in or not): it states the periods this
installation is configured with, so what it says is what the retention job does."""

from __future__ import annotations

from flask import current_app, render_template

from . import bp


def days(n: int) -> str:
    """A retention period as people read it ("365 days"; 0: "forever")."""
    if not n:
        return "forever"
    return "1 day" if n == 1 else f"{n} days"


def duration(seconds: int) -> str:
    """A short period as people read it: "7 days", "1 hour", "45 minutes"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}" + ("" if n == 1 else "s")
    return f"{seconds} seconds"


@bp.get("/privacy")
def page():
    """What is stored, why, and for how long (with this installation's settings)."""
    config = current_app.config
    return render_template(
        "privacy/page.html",
        announcements_kept=days(config["RETENTION_DAYS"]),
        audit_kept=days(config["AUDIT_RETENTION_DAYS"]),
        link_ttl=duration(config["LINK_TTL_S"]),
        client_token_ttl=duration(config["JWT_TTL_S"]),
        push_ttl=duration(config["PUSH_MAX_TTL_S"]),
    )
