"""A person's own settings: how announcements reach them, and their devices."""

from flask import Blueprint

bp = Blueprint("account", __name__)

from . import views
