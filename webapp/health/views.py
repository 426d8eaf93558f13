"""GET /healthz: 200 when the database answers, 503 otherwise."""

import logging

from flask import jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..db import get_session
from ..extensions import csrf, limiter
from . import bp

log = logging.getLogger(__name__)


@bp.get("/healthz")
@limiter.exempt
@csrf.exempt
def healthz():
    """Report each dependency; the status code says whether to route traffic here."""
    checks = {}
    try:
        get_session().execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError:
        log.exception("health check: database unavailable")
        checks["database"] = "unavailable"
    healthy = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    return jsonify(body), 200 if healthy else 503
