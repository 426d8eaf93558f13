"""Data protection against a real gunicorn + gevent server: erasing a person closes their
open tabs at once (others stay), and the retention job, run by the server's own job
runner, tells open tabs to drop an announcement it deleted."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from webapp.db import session_scope, utcnow
from webapp.models import Notification
from webapp.services import jobs, retention

from .school import LiveSchool
from .test_realtime import TO_7B


def test_erasing_a_person_closes_their_open_tabs(live_school: LiveSchool):
    school = live_school.school
    tabs = [live_school.tab("s7b_2"), live_school.tab("s7b_2")]
    bystander = live_school.tab("s7b_3")
    status, body = live_school.api.call("POST", f"/users/{school.emails['s7b_2']}/erase")
    assert status == 200, body
    assert [tab.close_status()[0] for tab in tabs] == [1008, 1008]
    bystander.send_json({"type": "ping"})
    assert bystander.expect("pong")
    # Their client tokens stop working too: the account is gone.
    status, _ = live_school.api.call("POST", "/tokens", {"email": body["email"]})
    assert status == 400


def test_retention_tells_open_tabs_to_drop_a_deleted_announcement(app, live_school: LiveSchool):
    tab = live_school.tab("s7b_1")
    old = live_school.api.send("Old news", targets=TO_7B)["id"]
    fresh = live_school.api.send("Fresh news", targets=TO_7B)["id"]
    assert [n["id"] for n in tab.notifications(2)] == [old, fresh]
    long_ago = utcnow() - timedelta(days=app.config["RETENTION_DAYS"] + 1)
    with session_scope(app) as session:
        session.execute(
            update(Notification)
            .where(Notification.id == old)
            .values(created_at=long_ago, sent_at=long_ago)
        )
        # A run the server's job runner picks up now (its own daily one ran at its start).
        jobs.enqueue(
            session, retention.RETENTION, "retention:2000-01-01", payload={"day": "2000-01-01"}
        )
        session.commit()
    assert tab.expect("expire", timeout=10) == {"type": "expire", "id": old}
    with session_scope(app) as session:
        assert session.get(Notification, old) is None
        assert session.get(Notification, fresh) is not None
    tab.send_json({"type": "ping"})
    assert tab.expect("pong")
