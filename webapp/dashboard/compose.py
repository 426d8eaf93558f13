"""Compose an announcement: the form, its live preview and recipient count, the people
picker, and send (with an "are you sure?" step for big audiences and emergencies)."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user
from flask_wtf.csrf import CSRFError

from ..db import get_session
from ..errors import DomainError
from ..extensions import client_address, csrf
from ..i18n import N_, local_time
from ..models import Priority
from ..realtime.live import live
from ..services import audience, emergency_templates, notifications, reach
from . import bp
from .forms import REMINDER_CHOICES, ComposeInput

EXPIRED_FORM = N_(
    "Your page was open too long and its security token expired, so nothing "
    "was sent. Your draft is below: press Send again."
)


def render_compose(
    data: ComposeInput,
    *,
    status: int = 200,
    error: str | None = None,
    confirm: audience.Resolved | None = None,
):
    """The compose page with `data` filled in (a fresh page, or the draft shown again)."""
    session = get_session()
    return render_template(
        "dashboard/compose.html",
        data=data,
        error=error,
        confirm=confirm,
        options=audience.options_for(session, current_user),
        chosen=audience.names_of(session, data.users),
        priorities=list(Priority),
        emergency_templates=emergency_templates.for_compose(session),
        reminder_choices=REMINDER_CHOICES,
        all_of_role=audience.ALL_OF_ROLE,
    ), status


@bp.get("/notifications/new")
def compose():
    """An empty compose page (the browser restores an unsent draft, if any)."""
    return render_compose(ComposeInput())


@bp.post("/notifications/preview")
def preview():
    """The alert exactly as recipients will see it, and who would get it."""
    data = ComposeInput.from_form(request.form)
    session = get_session()
    title, body_html = notifications.preview(
        notifications.Draft(title=data.title, body=data.body, priority=data.priority)
    )
    resolved, problem = None, None
    try:
        spec = data.audience_spec()
        if not spec.is_empty():
            resolved = audience.resolve(session, current_user, spec)
    except DomainError as exc:
        problem = exc.message
    session.rollback()  # previews never write
    return render_template(
        "dashboard/_preview_response.html",
        title=title,
        body_html=body_html,
        data=data,
        resolved=resolved,
        problem=problem,
    )


@bp.get("/notifications/people")
def people():
    """People the sender may reach whose name or email contains ?q=."""
    found = audience.people_in_reach(get_session(), current_user, request.args.get("q", ""))
    return render_template(
        "dashboard/_people_results.html", people=found, query=request.args.get("q", "")
    )


@bp.post("/notifications")
@csrf.exempt  # checked below, so an expired token keeps the draft instead of losing it
def send():
    """Send, after an "are you sure?" for big audiences and emergencies."""
    data = ComposeInput.from_form(request.form)
    try:
        csrf.protect()
    except CSRFError:
        return render_compose(data, status=400, error=gettext(EXPIRED_FORM))
    session = get_session()
    try:
        prepared = notifications.prepare(
            session,
            current_user,
            data.draft(current_app.config["TIMEZONE"]),
            confirm_above=current_app.config["CONFIRM_RECIPIENTS_ABOVE"],
            idempotency_key=data.key,
        )
        if prepared.needs_confirmation and not data.confirmed:
            return render_compose(data, confirm=prepared.resolved)
        result = notifications.send(
            session,
            prepared,
            address=client_address(),
            delays=reach.Delays.from_config(current_app.config),
        )
    except DomainError as exc:
        session.rollback()
        return render_compose(data, status=exc.status, error=exc.message)
    live().publish_sent(result)
    if result.scheduled:
        flash(
            gettext("Scheduled for %(when)s.", when=local_time(result.notification.send_at)),
            "success",
        )
    else:
        flash(
            gettext("Sent to %(count)s people.", count=result.notification.recipient_count),
            "success",
        )
    return redirect(url_for(".notification_status", notification_id=result.notification.id))
