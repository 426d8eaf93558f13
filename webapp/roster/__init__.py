"""Roster management for administrators: users, classes, guardians, CSV import."""

from flask import Blueprint

bp = Blueprint("roster", __name__)

from . import views
