"""Sign-in (throttled per account and per address), sign-out, and the home redirect."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext
from flask_login import current_user, login_required, login_user, logout_user

from ..db import get_session
from ..errors import Busy, NotAuthenticated
from ..extensions import client_address, limiter
from ..services import audit, users
from . import bp
from .forms import SigninForm


def safe_next(target: str | None) -> str | None:
    """Return `target` only if it is a path on this site ('/x'), never '//host' or 'http:'."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target or any(ord(c) < 32 for c in target):
        return None
    return target


def home_for(user) -> str:
    """Staff land on the dashboard, students and guardians on their inbox."""
    return url_for("dashboard.home") if user.is_staff else url_for("inbox.home")


def _submitted_email() -> str:
    return "account:" + (request.form.get("email") or "").strip().lower()[:254]


def _failed(response) -> bool:
    return response.status_code == 401


@bp.route("/signin", methods=["GET", "POST"])
@limiter.limit(
    lambda: current_app.config["SIGNIN_LIMIT_PER_ACCOUNT"],
    methods=["POST"],
    key_func=_submitted_email,
    deduct_when=_failed,
    scope="signin-account",
)
@limiter.limit(
    lambda: current_app.config["SIGNIN_LIMIT_PER_ADDRESS"],
    methods=["POST"],
    key_func=client_address,
    deduct_when=_failed,
    scope="signin-address",
)
def signin():
    """Show the sign-in form; on success renew the session and go to `next` or home."""
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = SigninForm(next=request.args.get("next", ""))
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("auth/signin.html", form=form), status
    try:
        user = users.authenticate(
            get_session(), form.email.data, form.password.data, client_address()
        )
    except NotAuthenticated as exc:
        form.password.errors.append(exc.message)
        return render_template("auth/signin.html", form=form), 401
    except Busy as exc:  # the form again, email kept, with when to come back
        form.password.errors.append(exc.message)
        page = render_template("auth/signin.html", form=form)
        return page, exc.status, {"Retry-After": str(exc.retry_after_s)}
    session.clear()  # a fresh session at sign-in: nothing carries over from before
    login_user(user)
    return redirect(safe_next(form.next.data) or home_for(user))


@bp.post("/signout")
@login_required
def signout():
    """Sign out (POST only, with CSRF) and return to the sign-in page."""
    db = get_session()
    audit.record(
        db,
        "signout",
        actor=current_user,
        subject=f"user:{current_user.email}",
        address=client_address(),
    )
    db.commit()
    logout_user()
    session.clear()
    flash(gettext("You are signed out."), "info")
    return redirect(url_for("auth.signin"))


@bp.get("/")
def index():
    """The front door: sign in, or go to your home page."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.signin"))
    return redirect(home_for(current_user))
