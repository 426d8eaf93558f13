"""GET /sw.js and /manifest.webmanifest, at the root so the worker's scope is the whole app.

The worker is a static file, but it has to be served from the root (a worker controls only
the paths under its own URL) and must not be cached: browsers check it for updates on
navigation, and a cached copy would keep an old worker running for a day.
"""

from flask import current_app, jsonify, request, send_from_directory, url_for
from flask_babel import gettext

from ..i18n import language
from . import bp

# Matches static/css/app.css: the top bar (the browser's title bar) and the page background.
THEME_COLOUR = "#0f172a"
BACKGROUND_COLOUR = "#f6f7fb"

# (file under static/icons/, sizes, purpose); the worker uses icon-192 and badge-96.
ICONS = [
    ("icon-192.png", "192x192", "any"),
    ("icon-512.png", "512x512", "any"),
    ("maskable-512.png", "512x512", "maskable"),
    ("badge-96.png", "96x96", "monochrome"),
]


@bp.app_context_processor
def theme_colour() -> dict[str, str]:
    """base.html's <meta name="theme-color">, the manifest's colour."""
    return {"theme_colour": THEME_COLOUR}


@bp.get("/sw.js")
def service_worker():
    """The service worker: push -> notification -> receipts; click -> the inbox."""
    response = send_from_directory(current_app.static_folder, "sw.js", mimetype="text/javascript")
    response.cache_control.no_cache = True  # revalidated (ETag) on every check
    response.headers["Service-Worker-Allowed"] = request.script_root + "/"
    return response


@bp.get("/manifest.webmanifest")
def manifest():
    """What a browser needs to install Schoolbell as an app (and iOS to allow push)."""
    icons = [
        {
            "src": url_for("static", filename=f"icons/{name}"),
            "sizes": sizes,
            "type": "image/png",
            "purpose": purpose,
        }
        for name, sizes, purpose in ICONS
    ]
    icons.append(
        {
            "src": url_for("static", filename="favicon.svg"),
            "sizes": "any",
            "type": "image/svg+xml",
            "purpose": "any",
        }
    )
    root = request.script_root + "/"
    response = jsonify(
        {
            "id": root,
            "name": "Schoolbell",
            "short_name": "Schoolbell",
            "description": gettext("Announcements from your school, live and on this device."),
            "lang": language(),
            "start_url": url_for("inbox.home"),
            "scope": root,
            "display": "standalone",
            "theme_color": THEME_COLOUR,
            "background_color": BACKGROUND_COLOUR,
            "icons": icons,
        }
    )
    response.mimetype = "application/manifest+json"
    response.cache_control.no_cache = True
    response.add_etag()
    return response.make_conditional(request)
