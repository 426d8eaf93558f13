"""Flask extensions, created unbound and bound to the app in create_app()."""

from flask import request
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect


def client_address() -> str:
    """The client's address (ProxyFix has already applied the trusted proxy count)."""
    return request.remote_addr or "unknown"


csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "auth.signin"
login_manager.login_message = "Please sign in to see that page."
login_manager.login_message_category = "info"
# Flask-Limiter keeps its counters in RATELIMIT_STORAGE_URI (memory:// or redis://).
limiter = Limiter(key_func=client_address, headers_enabled=True, retry_after="delta-seconds")
