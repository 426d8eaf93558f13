"""Quiet hours: the school's night (e.g. 21:00-07:00 in its time zone), when pushes and
e-mails about non-urgent announcements wait until the morning. Open tabs still show
everything live; urgent announcements and emergencies are never held.

The window is wall-clock time in the school's zone, so it holds across a change to or
from summer time: "07:00" is 07:00 on the clock of that morning, whatever the offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..models import Priority


@dataclass(frozen=True)
class Window:
    """From `start` to `end`, local time; over midnight when end <= start."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse(value: str) -> Window | None:
    """ "21:00-07:00" -> a Window; "" -> None (no quiet hours); ValueError otherwise."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        start, end = (time.fromisoformat(part.strip()) for part in value.split("-"))
    except ValueError:
        raise ValueError(f"{value!r} is not a window like 21:00-07:00") from None
    if start == end:
        raise ValueError(f"{value!r} starts and ends at the same time")
    return Window(start.replace(second=0, microsecond=0), end.replace(second=0, microsecond=0))


def held_until(now: datetime, window: Window | None, zone: str) -> datetime | None:
    """When the quiet hours that `now` falls in end (UTC), or None outside them."""
    if window is None:
        return None
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    today = local.date()
    clock = local.time().replace(tzinfo=None)
    if window.start < window.end:  # e.g. 12:00-14:00, within one day
        if not window.start <= clock < window.end:
            return None
        ends = today
    elif clock >= window.start:  # the evening part: it ends tomorrow morning
        ends = today + timedelta(days=1)
    elif clock < window.end:  # the morning part
        ends = today
    else:
        return None
    return datetime.combine(ends, window.end, tzinfo=tz).astimezone(now.tzinfo)


def holds(priority: Priority) -> bool:
    """Whether quiet hours hold pushes and e-mails of this priority (normal only)."""
    return priority is Priority.NORMAL


def until(config, priority: Priority, now: datetime) -> datetime | None:
    """When a push or e-mail of this priority may go, if quiet hours hold it now."""
    if not holds(priority):
        return None
    return held_until(now, config["QUIET_HOURS_WINDOW"], config["TIMEZONE"])
