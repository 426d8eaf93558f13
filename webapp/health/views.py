"""GET /healthz: 200 when the database answers, 503 otherwise. A broker link that is
down makes it "degraded", still 200: sends commit and open tabs catch up when it is
back, and taking every process out of rotation for it would help nobody."""

import logging

from flask import jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..db import get_session
from ..extensions import csrf, limiter
from ..realtime.live import live
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
    broker = live().broker.status()
    checks["broker"] = broker["state"]
    healthy = checks["database"] == "ok"
    status = "unavailable" if not healthy else "ok" if broker["state"] == "ok" else "degraded"
    body = {"status": status, "checks": checks, "broker": broker}
    return jsonify(body), 200 if healthy else 503
