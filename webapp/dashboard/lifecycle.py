"""After sending (or scheduling): edit an announcement, withdraw or cancel it. Each
action is its author's or an admin's (services/visibility.manageable), runs one service,
tells open tabs after commit, and returns to the status page."""

from __future__ import annotations

from flask import Response, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user

from ..db import get_session
from ..errors import DomainError
from ..extensions import client_address
from ..models import Priority
from ..realtime.live import live
from ..services import edits, reminders, status, visibility, withdrawal
from . import bp
from .forms import EditInput


def _render_edit(notification, data: EditInput, *, status: int = 200, error: str | None = None):
    return render_template(
        "dashboard/edit.html",
        notification=notification,
        data=data,
        error=error,
        priorities=list(Priority),
    ), status


@bp.get("/notifications/<id:notification_id>/edit")
def edit_form(notification_id: int):
    """The edit form, filled with the announcement as it is."""
    notification = visibility.manageable(get_session(), current_user, notification_id)
    return _render_edit(notification, EditInput.of(notification, current_app.config["TIMEZONE"]))


@bp.post("/notifications/<id:notification_id>/edit")
def edit(notification_id: int):
    """Save an edit; open tabs update in place (or are asked again: `reconfirm`)."""
    session = get_session()
    notification = visibility.manageable(session, current_user, notification_id)
    data = EditInput.from_form(request.form)
    try:
        change = data.edit(current_app.config["TIMEZONE"], notification.is_scheduled)
        result = edits.edit(
            session, current_user, notification_id, change, address=client_address()
        )
    except DomainError as exc:
        session.rollback()
        notification = visibility.manageable(session, current_user, notification_id)
        return _render_edit(notification, data, status=exc.status, error=exc.message)
    if result.change is not None:
        live().publish_changed(notification_id, result.change)
    flash(_edited_message(result), "success")
    return redirect(url_for(".notification_status", notification_id=notification_id))


def _edited_message(result: edits.EditResult) -> str:
    if result.notification.is_scheduled:
        return gettext("Saved. It goes out at its time.")
    if result.change == "reconfirm":
        return gettext("Saved. Everyone sees the new version and is asked again.")
    return gettext("Saved. Open alerts now show the new version.")


@bp.post("/notifications/<id:notification_id>/remind")
def remind(notification_id: int):
    """Remind now everyone who has not confirmed."""
    session = get_session()
    try:
        count = reminders.remind_now(
            session,
            current_user,
            notification_id,
            min_interval_s=current_app.config["REMIND_MIN_INTERVAL_S"],
            address=client_address(),
        )
    except DomainError as exc:
        session.rollback()
        flash(exc.message, "error")
    else:
        live().wake_jobs()
        flash(gettext("Reminding %(count)s people who have not confirmed.", count=count), "success")
    return redirect(url_for(".notification_status", notification_id=notification_id))


@bp.get("/notifications/<id:notification_id>/unconfirmed.csv")
def unconfirmed_csv(notification_id: int):
    """Everyone who has not confirmed (yet), as CSV."""
    session = get_session()
    notification = visibility.viewable(session, current_user, notification_id)
    body = status.unconfirmed_csv(session, notification)
    return Response(
        body,
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="unconfirmed-{notification.id}.csv"'
        },
    )


@bp.post("/notifications/<id:notification_id>/withdraw")
def withdraw(notification_id: int):
    """Withdraw a sent announcement (gone from every tab) or cancel a scheduled one."""
    session = get_session()
    notification, change = withdrawal.withdraw(
        session, current_user, notification_id, address=client_address()
    )
    if change is not None:
        live().publish_changed(notification_id, change)
    flash(
        gettext("Cancelled: it will not be sent.") if change is None else gettext("Withdrawn."),
        "success",
    )
    return redirect(url_for(".notification_status", notification_id=notification.id))
