"""A recipient's own announcements: the page, its list fragment, and receipts by form."""

from flask import render_template, request
from flask_login import current_user, login_required

from ..db import get_session, utcnow
from ..realtime.live import live
from ..services import inbox, receipts
from . import bp


@bp.before_request
@login_required
def _signed_in():
    """Everyone signed in has an inbox."""


@bp.get("/inbox")
def home():
    """The page: the newest announcements; new ones arrive live (schoolbell.js).
    `?open=<id>` (where a push notification leads) brings that announcement into view."""
    items = inbox.inbox(get_session(), current_user.id)
    opened = request.args.get("open", type=int)
    return render_template("inbox/home.html", items=items, opened=opened, now=utcnow())


@bp.get("/inbox/list")
def list_fragment():
    """The list alone, re-fetched by htmx when the socket brings something new."""
    items = inbox.inbox(get_session(), current_user.id)
    return render_template("inbox/_list.html", items=items, now=utcnow())


@bp.post("/inbox/<id:notification_id>/receipt")
def receipt(notification_id: int):
    """Mark read or confirm from the page; returns the updated item."""
    session = get_session()
    receipt = receipts.record_one(
        session, current_user.id, notification_id, request.form.get("state", "")
    )
    live().receipts_recorded([receipt])
    item = inbox.inbox_item(session, current_user.id, notification_id)
    return render_template("inbox/_item.html", item=item, now=utcnow())
