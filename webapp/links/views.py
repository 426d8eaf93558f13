"""The signed links in e-mails: the token in the address is the credential, so no
sign-in is needed, and these pages are never cached nor named in a Referer."""

from flask import current_app, render_template, request

from ..db import get_session
from ..extensions import client_address
from ..realtime.live import live
from ..services import links
from ..tokens import LinkClaims
from . import bp


@bp.after_request
def _private(response):
    """The token is in the address: keep it out of caches and other sites' logs."""
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _claims(purpose: str, token: str) -> LinkClaims:
    config = current_app.config
    return links.read_claims(config["SECRET_KEY"], purpose, token, max_age_s=config["LINK_TTL_S"])


@bp.get("/l/open/<token>")
def open_link(token: str):
    """Show the announcement and record `read` (once: a second use is link_used)."""
    claims = _claims("open", token)
    if request.method == "HEAD":  # a link checker's look uses nothing
        page = links.peek(get_session(), "open", claims)
    else:
        page, receipt = links.use_link(get_session(), "open", claims, address=client_address())
        live().receipts_recorded([receipt])
    return render_template("links/notification.html", page=page, purpose="open")


@bp.get("/l/confirm/<token>")
def confirm_page(token: str):
    """Show the announcement with a Confirm button; records nothing (mail scanners
    fetch links)."""
    page = links.peek(get_session(), "confirm", _claims("confirm", token))
    return render_template("links/notification.html", page=page, purpose="confirm", token=token)


@bp.post("/l/confirm/<token>")
def confirm(token: str):
    """The Confirm button: record `acknowledged` (once)."""
    claims = _claims("confirm", token)
    page, receipt = links.use_link(get_session(), "confirm", claims, address=client_address())
    live().receipts_recorded([receipt])
    return render_template("links/confirmed.html", page=page)
