"""The settings page: the person's language, the channels they want besides open tabs,
and the devices that get pushes, each with a button to remove it."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext, refresh
from flask_login import current_user, login_required

from ..db import get_session
from ..errors import DomainError
from ..extensions import client_address
from ..services import push, users
from . import bp
from .forms import ChannelsForm, LanguageForm


@bp.before_request
@login_required
def _signed_in():
    """Everyone signed in has settings."""


def _page(
    form: ChannelsForm | None = None, language_form: LanguageForm | None = None, status: int = 200
):
    """The page; each form starts from the saved choices unless given."""
    form = form or ChannelsForm(
        formdata=None, push=current_user.push_enabled, email=current_user.email_enabled
    )
    language_form = language_form or LanguageForm(
        formdata=None, language=current_user.language or ""
    )
    devices = [
        (subscription, push.device_name(subscription.user_agent, translated=True))
        for subscription in push.subscriptions_of(get_session(), current_user)
    ]
    return render_template(
        "account/settings.html", form=form, language_form=language_form, devices=devices
    ), status


@bp.get("/settings")
def settings():
    """Channels and devices."""
    return _page()


@bp.post("/settings")
def save_channels():
    """Save the channel choices, then back to the page."""
    form = ChannelsForm()
    if not form.validate_on_submit():
        return _page(form, status=400)
    users.set_channels(
        get_session(), current_user, bool(form.push.data), bool(form.email.data), client_address()
    )
    flash(gettext("Your choices are saved."), "success")
    return redirect(url_for(".settings"))


@bp.post("/settings/language")
def save_language():
    """Save the person's language ("": the browser's decides), then back to the page,
    which speaks it at once."""
    form = LanguageForm()
    if not form.validate_on_submit():
        return _page(language_form=form, status=400)
    try:
        users.set_language(get_session(), current_user, form.language.data, client_address())
    except DomainError as exc:
        get_session().rollback()
        form.language.errors = [exc.message]
        return _page(language_form=form, status=exc.status)
    refresh()  # this response's message already in the new language
    flash(gettext("Your language is saved."), "success")
    return redirect(url_for(".settings", _anchor="language"))


@bp.post("/settings/devices/<id:subscription_id>/remove")
def remove_device(subscription_id: int):
    """Stop pushes to one device (it can subscribe again with the button)."""
    try:
        removed = push.remove(get_session(), current_user, subscription_id, client_address())
    except DomainError as exc:
        get_session().rollback()
        flash(exc.message, "error")
        return _page(status=exc.status)
    flash(
        gettext(
            "Removed %(device)s: it gets no more pushes.",
            device=push.device_name(removed.user_agent, translated=True),
        ),
        "success",
    )
    return redirect(url_for(".settings", _anchor="devices"))
