"""The JSON API, /api/v1: Bearer API tokens (or a signed-in session), JSON errors."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from . import notifications, presence, push, views
