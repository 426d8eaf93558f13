"""Reminders and deadlines, service by service: the jobs a send queues, an edit that
moves the deadline queues them anew, the compose page's reminder choices, and the CSV
of who has not confirmed (safe to open in a spreadsheet)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from webapp.dashboard.forms import reminder_times
from webapp.db import utcnow
from webapp.models import Job, JobState
from webapp.services import edits, reminders, status
from webapp.services.edits import Edit

from .test_notifications import draft, open_school, send


@pytest.fixture
def db(database_url, tmp_path, monkeypatch):
    yield from open_school(database_url, tmp_path, monkeypatch)


def queued(db, nid: int) -> list[tuple[str, datetime]]:
    db.session.rollback()
    return sorted(
        (j.kind, j.due_at)
        for j in db.session.scalars(
            select(Job).where(
                Job.notification_id == nid,
                Job.kind.in_([reminders.REMIND, reminders.DEADLINE]),
                Job.state == JobState.QUEUED,
            )
        )
    )


def test_a_send_queues_its_reminders_and_deadline_and_an_edit_moves_them(db):
    deadline = utcnow() + timedelta(days=2)
    before = (deadline - timedelta(days=1), deadline - timedelta(hours=1))
    result = send(db.session, db.user("admin"), draft(confirm_by=deadline, remind_at=before))
    nid = result.notification.id
    assert result.notification.require_ack is True  # a deadline asks for confirmation
    assert queued(db, nid) == sorted(
        [("deadline", deadline), ("remind", before[0]), ("remind", before[1])]
    )
    later = deadline + timedelta(days=1)
    edits.edit(db.session, db.user("admin"), nid, Edit(confirm_by=later))
    # The reminders still before the new deadline stay; the deadline moved.
    assert queued(db, nid) == sorted(
        [("deadline", later), ("remind", before[0]), ("remind", before[1])]
    )


def test_the_compose_choices_become_times_before_the_deadline():
    deadline = datetime(2031, 3, 12, 8, 0, tzinfo=UTC)
    times = reminder_times(["evening", "hour", "day"], deadline, None, "Europe/Berlin")
    assert times == (
        datetime(2031, 3, 11, 8, 0, tzinfo=UTC),  # one day before
        datetime(2031, 3, 11, 17, 0, tzinfo=UTC),  # 18:00 in Berlin the evening before
        datetime(2031, 3, 12, 7, 0, tzinfo=UTC),  # one hour before
    )
    # A send later than a choice leaves it out (nobody to remind yet).
    assert reminder_times(["day", "hour"], deadline, deadline - timedelta(hours=3), "UTC") == (
        deadline - timedelta(hours=1),
    )
    assert reminder_times(["day"], None, None, "UTC") == ()


@pytest.mark.parametrize("name", ['=HYPERLINK("http://x")', "+1", "-2", "@sum", "\tx"])
def test_csv_cells_that_a_spreadsheet_would_run_are_kept_as_text(name):
    assert status.csv_cell(name) == "'" + name
    assert status.csv_cell("Ann") == "Ann" and status.csv_cell(None) == ""


def test_a_reminder_removed_and_added_again_is_queued_again(db):
    deadline = utcnow() + timedelta(days=2)
    first = deadline - timedelta(days=1)
    nid = send(
        db.session, db.user("admin"), draft(confirm_by=deadline, remind_at=(first,))
    ).notification.id
    edits.edit(db.session, db.user("admin"), nid, Edit(remind_at=[]))
    assert queued(db, nid) == [("deadline", deadline)]
    edits.edit(db.session, db.user("admin"), nid, Edit(remind_at=[first]))
    assert queued(db, nid) == [("deadline", deadline), ("remind", first)]
