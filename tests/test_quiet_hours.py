"""Quiet hours, with explicit times: the window over midnight and within a day, its end
on the school's wall clock across summer-time changes, what it holds, the setting's
validation, and a deferred job that keeps its attempts."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from webapp.config import ConfigError
from webapp.models import Priority
from webapp.services import quiet_hours
from webapp.services.quiet_hours import Window

from .conftest import make_test_app

NIGHT = Window(time(21, 0), time(7, 0))
BERLIN = "Europe/Berlin"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("now", "until"),
    [
        ("2026-12-01T20:59:00+01:00", None),  # before the night
        ("2026-12-01T21:00:00+01:00", "2026-12-02T07:00:00+01:00"),  # it starts
        ("2026-12-01T23:30:00+01:00", "2026-12-02T07:00:00+01:00"),
        ("2026-12-02T03:00:00+01:00", "2026-12-02T07:00:00+01:00"),  # after midnight
        ("2026-12-02T07:00:00+01:00", None),  # it ended
        ("2026-12-02T12:00:00+01:00", None),
    ],
)
def test_a_night_window_holds_from_its_start_to_the_next_morning(now, until):
    expected = at(until) if until else None
    assert quiet_hours.held_until(at(now), NIGHT, BERLIN) == expected


def test_the_morning_end_is_on_the_wall_clock_across_summer_time():
    # Summer time starts in Berlin on 2026-03-29 at 02:00: 07:00 is then UTC+2.
    assert quiet_hours.held_until(at("2026-03-28T22:00:00+01:00"), NIGHT, BERLIN) == at(
        "2026-03-29T07:00:00+02:00"
    )
    # And ends on 2026-10-25 at 03:00: 07:00 is UTC+1 again.
    assert quiet_hours.held_until(at("2026-10-24T23:00:00+02:00"), NIGHT, BERLIN) == at(
        "2026-10-25T07:00:00+01:00"
    )


def test_a_window_within_one_day():
    lunch = Window(time(12, 0), time(14, 0))
    assert quiet_hours.held_until(at("2026-12-01T13:00:00+00:00"), lunch, "UTC") == at(
        "2026-12-01T14:00:00+00:00"
    )
    assert quiet_hours.held_until(at("2026-12-01T14:00:00+00:00"), lunch, "UTC") is None
    assert quiet_hours.held_until(at("2026-12-01T11:59:00+00:00"), lunch, "UTC") is None


def test_only_normal_announcements_are_held():
    config = {"QUIET_HOURS_WINDOW": NIGHT, "TIMEZONE": BERLIN}
    night = at("2026-12-01T23:00:00+01:00")
    assert quiet_hours.until(config, Priority.NORMAL, night) == at("2026-12-02T07:00:00+01:00")
    assert quiet_hours.until(config, Priority.URGENT, night) is None
    assert quiet_hours.until(config, Priority.EMERGENCY, night) is None
    assert quiet_hours.until({**config, "QUIET_HOURS_WINDOW": None}, Priority.NORMAL, night) is None


@pytest.mark.parametrize("value", ["21:00", "21-7", "25:00-07:00", "07:00-07:00", "night"])
def test_a_bad_setting_stops_the_start_with_a_clear_error(value, database_url, tmp_path):
    with pytest.raises(ConfigError, match="QUIET_HOURS"):
        make_test_app(database_url, tmp_path, QUIET_HOURS=value)


def test_the_setting_is_read_and_empty_means_none(database_url, tmp_path):
    app = make_test_app(database_url, tmp_path, QUIET_HOURS=" 21:30-06:45 ")
    assert str(app.config["QUIET_HOURS_WINDOW"]) == "21:30-06:45"
    assert (
        make_test_app(database_url, tmp_path / "b", QUIET_HOURS="").config["QUIET_HOURS_WINDOW"]
        is None
    )
