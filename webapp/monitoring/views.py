"""GET /metrics: every worker's metrics in Prometheus's text format (or OpenMetrics, when
the scraper asks for it). Off (404) until a token or an allowlist is set."""

from flask import Response, abort, current_app, make_response, request

from .. import errors, metrics
from ..extensions import client_address, csrf, limiter
from . import bp


@bp.get("/metrics")
@limiter.exempt
@csrf.exempt
def scrape():
    """Refuse who may not read; otherwise answer the metrics, never cached."""
    config = current_app.config
    if not metrics.enabled(config):
        abort(404)
    refusal = metrics.scrape_refusal(config, client_address(), request.headers.get("Authorization"))
    if refusal is not None:
        response = make_response(errors.respond(refusal, json=True))
        if refusal is errors.METRICS_TOKEN_REQUIRED:
            response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics.exposition(current_app, request.headers.get("Accept"))
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})
