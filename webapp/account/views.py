"""The settings page: the channels a person wants besides open tabs, and the devices
that get pushes, each with a button to remove it."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from ..db import get_session
from ..errors import DomainError
from ..extensions import client_address
from ..services import push, users
from . import bp
from .forms import ChannelsForm


@bp.before_request
@login_required
def _signed_in():
    """Everyone signed in has settings."""


def _page(form: ChannelsForm | None = None, status: int = 200):
    """The page; the form starts from the saved choices unless given."""
    form = form or ChannelsForm(
        formdata=None, push=current_user.push_enabled, email=current_user.email_enabled
    )
    devices = [
        (subscription, push.device_name(subscription.user_agent))
        for subscription in push.subscriptions_of(get_session(), current_user)
    ]
    return render_template("account/settings.html", form=form, devices=devices), status


@bp.get("/settings")
def settings():
    """Channels and devices."""
    return _page()


@bp.post("/settings")
def save_channels():
    """Save the channel choices, then back to the page."""
    form = ChannelsForm()
    if not form.validate_on_submit():
        return _page(form, 400)
    users.set_channels(
        get_session(), current_user, bool(form.push.data), bool(form.email.data), client_address()
    )
    flash("Your choices are saved.", "success")
    return redirect(url_for(".settings"))


@bp.post("/settings/devices/<id:subscription_id>/remove")
def remove_device(subscription_id: int):
    """Stop pushes to one device (it can subscribe again with the button)."""
    try:
        removed = push.remove(get_session(), current_user, subscription_id, client_address())
    except DomainError as exc:
        get_session().rollback()
        flash(exc.message, "error")
        return _page(status=exc.status)
    flash(f"Removed {push.device_name(removed.user_agent)}: it gets no more pushes.", "success")
    return redirect(url_for(".settings", _anchor="devices"))
