"""The pages behind the signed links in e-mails: open or confirm without signing in."""

from flask import Blueprint

bp = Blueprint("links", __name__)

from . import views
