"""Staff home. Compose, live presence and delivery status arrive with later work."""

from flask import render_template
from flask_login import current_user, login_required

from ..db import get_session
from ..errors import Forbidden
from ..services import classes
from . import bp


@bp.before_request
@login_required
def _staff_only():
    """Only admins and teachers use the dashboard."""
    if not current_user.is_staff:
        raise Forbidden("The dashboard is for school staff.")


@bp.get("/dashboard")
def home():
    """The staff landing page."""
    my_classes = classes.classes_of(get_session(), current_user.id)
    return render_template("dashboard/home.html", my_classes=my_classes)
