"""The staff dashboard."""

from flask import Blueprint

bp = Blueprint("dashboard", __name__)

from . import compose, history, status, views
