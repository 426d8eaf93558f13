"""GET /api/v1/openapi.json (the OpenAPI 3.1 document) and GET /api/docs (Swagger UI).

Both are public: the document describes the API, it holds no data. It is built once per
process (the routes and schemas do not change while it runs)."""

from __future__ import annotations

from flask import current_app, jsonify, render_template

from ..api import openapi
from ..extensions import csrf
from . import bp

SWAGGER_UI = "vendor/swagger-ui-5.35.0"


@bp.get("/api/v1/openapi.json")
@csrf.exempt
def openapi_document():
    """The OpenAPI 3.1 document of /api/v1."""
    document = current_app.extensions.get("schoolbell.openapi")
    if document is None:
        document = current_app.extensions["schoolbell.openapi"] = openapi.document(current_app)
    return jsonify(document)


@bp.get("/api/docs")
def page():
    """The API reference, drawn by the vendored Swagger UI from the document."""
    return render_template("apidocs/page.html", swagger_ui=SWAGGER_UI)
