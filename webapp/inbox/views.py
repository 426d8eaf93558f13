"""The inbox page. Live delivery and receipts arrive with the realtime work."""

from flask import render_template
from flask_login import login_required

from . import bp


@bp.get("/inbox")
@login_required
def home():
    """The signed-in user's announcements."""
    return render_template("inbox/home.html")
