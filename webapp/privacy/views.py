"""The privacy page, for everyone (signed in or not): it states the periods this
installation is configured with, so what it says is what the retention job does."""

from __future__ import annotations

from flask import current_app, render_template
from flask_babel import gettext, ngettext

from . import bp


def days(n: int) -> str:
    """A retention period as people read it, in the page's language ("365 days" /
    "365 Tage"; 0: "forever", which the page words as a sentence of its own)."""
    if not n:
        return gettext("forever")
    return ngettext("%(num)d day", "%(num)d days", n)


def duration(seconds: int) -> str:
    """A short period as people read it: "7 days", "1 hour", "45 minutes"."""
    if seconds and seconds % 86400 == 0:
        return ngettext("%(num)d day", "%(num)d days", seconds // 86400)
    if seconds and seconds % 3600 == 0:
        return ngettext("%(num)d hour", "%(num)d hours", seconds // 3600)
    if seconds and seconds % 60 == 0:
        return ngettext("%(num)d minute", "%(num)d minutes", seconds // 60)
    return ngettext("%(num)d second", "%(num)d seconds", seconds)


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
