"""Sessions, security headers and the asset URLs pages load (CSP without inline script)."""

from __future__ import annotations

from flask import Flask, current_app, url_for
from sqlalchemy import select

from .db import get_session
from .extensions import login_manager
from .models import User

# Pinned front-end assets, vendored in static/vendor/; the CDN copies are the same files
# (checked by SRI hash) for deployments that prefer a CDN.
VENDOR_SCRIPTS = [
    (
        "vendor/htmx-2.0.11.min.js",
        "https://unpkg.com/htmx.org@2.0.11/dist/htmx.min.js",
        "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg",
    ),
    (
        "vendor/htmx-ext-ws-2.0.4.min.js",
        "https://unpkg.com/htmx-ext-ws@2.0.4/dist/ws.min.js",
        "sha384-1RwI/nvUSrMRuNj7hX1+27J8XDdCoSLf0EjEyF69nacuWyiJYoQ/j39RT1mSnd2G",
    ),
]
CDN_ORIGIN = "https://unpkg.com"


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """Load the signed-in user; a stale epoch or a deactivated account signs them out."""
    user_id, _, epoch = session_id.partition(":")
    if not (user_id.isdigit() and epoch.isdigit()):
        return None
    session = get_session()
    user = session.scalar(select(User).where(User.id == int(user_id)))
    # End this read's transaction now: on SQLite it holds the write lock (BEGIN
    # IMMEDIATE), and the view may wait for the request body before it writes anything.
    session.commit()
    if user is None or not user.active or user.session_epoch != int(epoch):
        return None
    return user


def vendor_scripts() -> list[dict[str, str | None]]:
    """The <script> tags for htmx: local files, or the CDN with SRI when configured."""
    from_cdn = current_app.config["HTMX_FROM_CDN"]
    return [
        {"src": cdn, "integrity": sri}
        if from_cdn
        else {"src": url_for("static", filename=local), "integrity": None}
        for local, cdn, sri in VENDOR_SCRIPTS
    ]


def content_security_policy() -> str:
    """A strict policy: scripts and styles only from files, no inline script or eval."""
    script_src = "'self'" + (f" {CDN_ORIGIN}" if current_app.config["HTMX_FROM_CDN"] else "")
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {script_src}",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def init_app(app: Flask) -> None:
    """Add security headers to every response and asset helpers to templates."""

    @app.after_request
    def _headers(response):
        response.headers.setdefault("Content-Security-Policy", content_security_policy())
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if app.config["HTTPS"]:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    app.jinja_env.globals["vendor_scripts"] = vendor_scripts
