"""The staff dashboard."""

from flask import Blueprint

bp = Blueprint("dashboard", __name__)

from . import audit, components, compose, emergencies, history, lifecycle, status, views

bp.record_once(lambda state: components.register(state.app))
