"""The installable web app: the service worker (Web Push on devices) and the manifest."""

from flask import Blueprint

bp = Blueprint("pwa", __name__)

from . import views
