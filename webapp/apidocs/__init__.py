"""The API's description: the OpenAPI document and a page that shows it."""

from flask import Blueprint

bp = Blueprint("apidocs", __name__)

from . import views
