"""History: the announcements a staff member may see, searched, filtered, paginated.

Filter values that make no sense (an unknown priority, a malformed date, page 0) are
ignored with a notice on the page, and the answer is still 200: htmx does not swap
error responses, so a 400 would leave the list silently stale as the user types.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from flask import make_response, render_template, request
from flask_babel import gettext
from flask_login import current_user

from ..db import MAX_ID, get_session
from ..i18n import N_
from ..models import Priority
from ..services import history as history_service
from ..services.history import HistoryFilters, HistoryPage
from . import bp
from .query_args import date_arg

PER_PAGE = 25
MAX_SEARCH_CHARS = 200
DRILLS = "drill"  # the priority filter's choice for emergency drills


@bp.get("/notifications", endpoint="history")
def history():
    """Sent announcements, newest first; htmx gets the results component alone."""
    filters, page, notices = parse_filters(request.args)
    result = history_service.history(get_session(), current_user, filters, page, PER_PAGE)
    notices += _not_applied(filters, page, result)
    template = "dashboard/_history_rows.html" if _htmx_partial() else "dashboard/history.html"
    response = make_response(
        render_template(
            template,
            result=result,
            filters=result.filters,
            notices=notices,
            link_args=link_args(result.filters),
            priorities=list(Priority),
        )
    )
    response.vary.add("HX-Request")  # the same URL answers a page or a component
    return response


def parse_filters(args: Mapping[str, str]) -> tuple[HistoryFilters, int, list[str]]:
    """The filters and page asked for; values that make no sense are left out and
    explained in the returned notices."""
    notices: list[str] = []
    priority, drill = None, None
    if raw := args.get("priority", "").strip():
        if raw.lower() == DRILLS:
            priority, drill = Priority.EMERGENCY, True
        else:
            try:
                priority = Priority(raw.lower())
            except ValueError:
                notices.append(
                    gettext(
                        "Ignored the priority “%(value)s”: choose normal, urgent, emergency or"
                        " drill.",
                        value=raw[:40],
                    )
                )
            # "Emergency" means the real ones: drills are their own choice.
            drill = False if priority is Priority.EMERGENCY else None
    sent_from = date_arg(
        args, "from", N_("Ignored the from date “%(value)s”: use a date like 2025-09-01."), notices
    )
    sent_to = date_arg(
        args, "to", N_("Ignored the to date “%(value)s”: use a date like 2025-09-01."), notices
    )
    if sent_from and sent_to and sent_from > sent_to:
        notices.append(gettext("The from date is after the to date, so nothing can match."))
    page = _whole_number(args, "page", notices, N_("pages are numbered from 1"))
    if page is None:
        page = 1
    elif page < 1:
        notices.append(gettext("There is no page %(page)s; showing the first.", page=page))
        page = 1
    filters = HistoryFilters(
        text=args.get("q", "").strip()[:MAX_SEARCH_CHARS],
        author_id=_whole_number(args, "author", notices, N_("choose one from the list")),
        class_id=_whole_number(args, "class", notices, N_("choose one from the list")),
        priority=priority,
        drill=drill,
        sent_from=sent_from,
        sent_to=sent_to,
    )
    return filters, page, notices


def link_args(filters: HistoryFilters) -> dict[str, str]:
    """The query string of the filters that are set, for page links that keep them."""
    values = {
        "q": filters.text,
        "author": filters.author_id,
        "class": filters.class_id,
        "priority": _priority_arg(filters),
        "from": filters.sent_from.isoformat() if filters.sent_from else None,
        "to": filters.sent_to.isoformat() if filters.sent_to else None,
    }
    return {name: str(value) for name, value in values.items() if value not in (None, "")}


def _priority_arg(filters: HistoryFilters) -> str | None:
    """The priority filter's value: a priority, or "drill" for emergency drills."""
    if filters.drill:
        return DRILLS
    return filters.priority.value if filters.priority else None


def _whole_number(args: Mapping[str, str], name: str, notices: list[str], hint: str) -> int | None:
    """A whole number (an id or a page), or None (with a notice for anything else)."""
    raw = args.get(name, "").strip()
    if not raw:
        return None
    if re.fullmatch(r"-?[0-9]{1,10}", raw) and abs(int(raw)) <= MAX_ID:
        return int(raw)
    notices.append(
        gettext(
            "Ignored the %(name)s “%(value)s”: %(hint)s.",
            name=name,
            value=raw[:40],
            hint=gettext(hint),
        )
    )
    return None


def _not_applied(asked: HistoryFilters, page: int, result: HistoryPage) -> list[str]:
    """Notices for what the service could not apply as asked."""
    notices = []
    if result.page != page:
        notices.append(
            gettext(
                "There is no page %(page)s; showing page %(shown)s of %(pages)s.",
                page=page,
                shown=result.page,
                pages=result.pages,
            )
        )
    if asked.author_id is not None and result.filters.author_id is None:
        notices.append(
            gettext("Ignored the author: nobody with that id sent anything you can see.")
        )
    if asked.class_id is not None and result.filters.class_id is None:
        notices.append(
            gettext("Ignored the class: it is not one of the classes you can filter by.")
        )
    return notices


def _htmx_partial() -> bool:
    """An htmx swap wants the results component; a history restore wants the page."""
    return request.headers.get("HX-Request") == "true" and not request.headers.get(
        "HX-History-Restore-Request"
    )
