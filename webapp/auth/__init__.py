"""Sign-in and sign-out."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from . import views
