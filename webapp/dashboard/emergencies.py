"""Emergencies in the dashboard: administrators edit the emergency templates; the author
or an administrator gives an emergency the all clear from its status page."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user

from ..db import get_session
from ..errors import DomainError
from ..extensions import client_address
from ..realtime.events import NotificationChanged
from ..realtime.live import live
from ..services import emergencies, emergency_templates
from . import bp


@bp.get("/emergency-templates", endpoint="emergency_templates")
def emergency_templates_page():
    """Every template, each with its own edit form (administrators only)."""
    templates = emergency_templates.editable(get_session(), current_user)
    return render_template("dashboard/emergency_templates.html", templates=templates, error=None)


@bp.post("/emergency-templates/<key>")
def update_emergency_template(key: str):
    """Save one template (CSRF-checked like every form); errors show the page again with
    what was typed kept."""
    session = get_session()
    form = request.form
    try:
        template = emergency_templates.update(
            session,
            current_user,
            key,
            name=form.get("name", ""),
            title=form.get("title", ""),
            body=form.get("body", ""),
            address=client_address(),
        )
    except DomainError as exc:
        session.rollback()
        if exc.status in (403, 404):
            raise
        templates = emergency_templates.editable(session, current_user)
        return render_template(
            "dashboard/emergency_templates.html",
            templates=templates,
            error=exc.message,
            failed={"key": key, **{f: form.get(f, "") for f in ("name", "title", "body")}},
        ), exc.status
    flash(gettext("Saved the template “%(name)s”.", name=template.name), "success")
    return redirect(url_for(".emergency_templates") + f"#template-{template.key}")


@bp.post("/notifications/<id:notification_id>/all-clear")
def give_all_clear(notification_id: int):
    """End an emergency; every open tab of its recipients is told at once."""
    notification = emergencies.all_clear(
        get_session(),
        current_user,
        notification_id,
        request.form.get("message"),
        address=client_address(),
    )
    live().publish_changed(notification.id, NotificationChanged.ALL_CLEAR)
    flash(gettext("All clear sent: the emergency is over for everyone who got it."), "success")
    return redirect(url_for(".notification_status", notification_id=notification.id))
