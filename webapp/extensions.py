"""Flask extensions, created unbound and bound to the app in create_app()."""

from flask import request
from flask_babel import gettext
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from .i18n import N_


def client_address() -> str:
    """The client's address (ProxyFix has already applied the trusted proxy count)."""
    return request.remote_addr or "unknown"


csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "auth.signin"
login_manager.login_message = N_("Please sign in to see that page.")
login_manager.localize_callback = gettext  # flashed in the request's language
login_manager.login_message_category = "info"
# Flask-Limiter keeps its counters in RATELIMIT_STORAGE_URI (memory:// or redis://).
# Its own headers are off: it would rewrite every Retry-After of a limited route (our
# 503s too), rounded down, often to 0; errors.py sets Retry-After on a 429 itself.
limiter = Limiter(key_func=client_address, headers_enabled=False)
