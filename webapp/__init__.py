"""Schoolbell: a self-hosted live-announcement server for schools."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict | None = None) -> Flask:
    """Build the app: settings from the environment (then `config`), extensions, blueprints."""
    app = Flask(
        __name__,
        instance_path=str(ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    from . import config as settings

    app.config.update(settings.from_environment())
    app.config.update(config or {})
    settings.finalise(app.config, Path(app.instance_path))

    from . import cli, db, errors, i18n, logs, metrics, passwords, security
    from .extensions import csrf, limiter, login_manager
    from .realtime import live, session
    from .services import vapid

    logs.init_app(app)
    db.init_app(app)
    i18n.init_app(app)
    csrf.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)
    security.init_app(app)
    passwords.init_app(app)
    vapid.init_app(app)
    errors.register_handlers(app)
    metrics.init_app(app)
    cli.init_app(app)
    live.init_app(app)
    session.init_app(app)  # /ws, in front of Flask
    if app.config["PROXY_COUNT"]:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app,
            x_for=app.config["PROXY_COUNT"],
            x_proto=app.config["PROXY_COUNT"],
            x_host=app.config["PROXY_COUNT"],
        )

    from .account import bp as account_bp
    from .api import bp as api_bp
    from .apidocs import bp as apidocs_bp
    from .auth import bp as auth_bp
    from .dashboard import bp as dashboard_bp
    from .health import bp as health_bp
    from .inbox import bp as inbox_bp
    from .links import bp as links_bp
    from .monitoring import bp as monitoring_bp
    from .privacy import bp as privacy_bp
    from .pwa import bp as pwa_bp
    from .roster import bp as roster_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(inbox_bp)
    app.register_blueprint(links_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(roster_bp, url_prefix="/roster")
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    app.register_blueprint(apidocs_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(monitoring_bp)
    app.register_blueprint(pwa_bp)
    app.register_blueprint(privacy_bp)
    return app
