"""The privacy page: what Schoolbell stores, why, and for how long."""

from flask import Blueprint

bp = Blueprint("privacy", __name__)

from . import views
