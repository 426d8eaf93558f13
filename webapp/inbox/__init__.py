"""A recipient's own announcements."""

from flask import Blueprint

bp = Blueprint("inbox", __name__)

from . import views
