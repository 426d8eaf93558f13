"""The audit log (administrators): who did what and when, filtered by actor, action
and dates, a page at a time, and the filtered entries as CSV.

As on the history page, filter values that make no sense (a malformed date) are
ignored with a notice and the answer is still 200, so htmx swaps the results.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import make_response, render_template, request
from flask_babel import gettext
from flask_login import current_user

from ..db import get_session, utcnow
from ..i18n import N_
from ..services import audit
from ..services.audit import AuditFilters
from . import bp
from .query_args import date_arg

PER_PAGE = 50
MAX_FILTER_CHARS = 100


@bp.get("/dashboard/audit", endpoint="audit_log")
def audit_log():
    """The audit log, newest first; htmx gets the results component alone."""
    filters, notices = parse_filters(request.args)
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    result = audit.search(get_session(), current_user, filters, page, PER_PAGE)
    partial = request.headers.get("HX-Request") == "true" and not request.headers.get(
        "HX-History-Restore-Request"
    )
    response = make_response(
        render_template(
            "dashboard/_audit_rows.html" if partial else "dashboard/audit.html",
            result=result,
            filters=filters,
            notices=notices,
            link_args=link_args(filters),
        )
    )
    response.vary.add("HX-Request")  # the same URL answers a page or a component
    return response


@bp.get("/dashboard/audit.csv", endpoint="audit_csv")
def audit_csv():
    """The filtered audit log as a CSV download."""
    filters, _ = parse_filters(request.args)
    body = audit.to_csv(get_session(), current_user, filters)
    response = make_response(body)
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = (
        f'attachment; filename="audit-{utcnow().date().isoformat()}.csv"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def parse_filters(args: Mapping[str, str]) -> tuple[AuditFilters, list[str]]:
    """The filters asked for; malformed dates are left out and explained."""
    notices: list[str] = []
    # The same notices as the history page's (dashboard/history.py), so one translation.
    at_from = date_arg(
        args, "from", N_("Ignored the from date “%(value)s”: use a date like 2025-09-01."), notices
    )
    at_to = date_arg(
        args, "to", N_("Ignored the to date “%(value)s”: use a date like 2025-09-01."), notices
    )
    if at_from and at_to and at_from > at_to:
        notices.append(gettext("The from date is after the to date, so nothing can match."))
    filters = AuditFilters(
        actor=args.get("actor", "").strip()[:MAX_FILTER_CHARS],
        action=args.get("action", "").strip()[:MAX_FILTER_CHARS],
        at_from=at_from,
        at_to=at_to,
    )
    return filters, notices


def link_args(filters: AuditFilters) -> dict[str, str]:
    """The query string of the filters that are set (page links and the CSV keep them)."""
    values = {
        "actor": filters.actor,
        "action": filters.action,
        "from": filters.at_from.isoformat() if filters.at_from else "",
        "to": filters.at_to.isoformat() if filters.at_to else "",
    }
    return {name: value for name, value in values.items() if value}
