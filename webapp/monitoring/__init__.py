"""GET /metrics: Prometheus scrapes, for those the settings allow (webapp/metrics.py)."""

from flask import Blueprint

bp = Blueprint("monitoring", __name__)

from . import views
