"""Staff home: who is online (live), your classes, and where to go next."""

from flask import render_template
from flask_login import current_user, login_required

from .. import errors
from ..db import get_session
from ..services import classes
from . import bp, components


@bp.before_request
@login_required
def _staff_only():
    """Only admins and teachers use the dashboard."""
    if not current_user.is_staff:
        raise errors.STAFF_ONLY.error()


@bp.get("/dashboard")
def home():
    """The staff landing page; the online panel updates itself over /ws."""
    return render_template(
        "dashboard/home.html",
        online=components.online_summary(get_session(), components.online_viewer(current_user)),
        my_classes=classes.classes_of(get_session(), current_user.id),
    )


@bp.get("/dashboard/online")
def online():
    """The online panel alone."""
    return components.render_online(get_session(), components.online_viewer(current_user))
