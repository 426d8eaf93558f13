"""Staff home: who is online (live), your classes, and where to go next."""

from flask import render_template
from flask_login import current_user, login_required

from ..db import get_session
from ..errors import Forbidden
from ..models import Role
from ..realtime.live import live
from ..services import classes, presence
from . import bp


@bp.before_request
@login_required
def _staff_only():
    """Only admins and teachers use the dashboard."""
    if not current_user.is_staff:
        raise Forbidden("The dashboard is for school staff.")


def _online_summary():
    """Presence as the current user may see it (admins: everyone; teachers: their classes)."""
    viewer = None if current_user.role is Role.ADMIN else current_user
    return presence.summary(get_session(), viewer, live().presence())


@bp.get("/dashboard")
def home():
    """The staff landing page; the online panel updates itself over /ws."""
    return render_template(
        "dashboard/home.html",
        online=_online_summary(),
        my_classes=classes.classes_of(get_session(), current_user.id),
    )


@bp.get("/dashboard/online")
def online():
    """The online panel alone."""
    return render_template("dashboard/_online.html", online=_online_summary())
