"""Liveness and readiness for load balancers and monitoring."""

from flask import Blueprint

bp = Blueprint("health", __name__)

from . import views
