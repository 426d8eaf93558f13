"""Query-string filters of the dashboard's list pages (history, audit log): a value that
is not what the filter takes is ignored with a notice, never a 400."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date

from flask_babel import gettext

ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def date_arg(args: Mapping[str, str], name: str, ignored: str, notices: list[str]) -> date | None:
    """A YYYY-MM-DD date, or None (with the notice `ignored`, a message marked with N_
    and translated here, when something else was given)."""
    raw = args.get(name, "").strip()
    if not raw:
        return None
    try:
        if ISO_DATE.fullmatch(raw):
            return date.fromisoformat(raw)
    except ValueError:
        pass
    notices.append(gettext(ignored, value=raw[:40]))
    return None
