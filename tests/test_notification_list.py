"""GET /api/v1/notifications: what a script lists (newest first, a page at a time by
cursor, filtered by stage and time), seen by whom (services/visibility), on SQLite and
PostgreSQL; and the stage filter's SQL agreeing with the stage rule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from webapp.db import get_session, utcnow
from webapp.models import Notification
from webapp.services import classes, notifications
from webapp.services.notifications import Draft, Stage

from .school_db import own_school, to_class


@pytest.fixture
def db(any_database_url, tmp_path):
    """A school of this test's own (so the list holds only what the test sent)."""
    yield from own_school(any_database_url, tmp_path)


@pytest.fixture
def api(db):
    """GET with the school's admin API token; returns (status, body)."""
    client = db.app.test_client()

    def get(query: str = "") -> tuple[int, dict]:
        response = client.get(
            "/api/v1/notifications" + query,
            headers={"Authorization": f"Bearer {db.school.api_token}"},
        )
        return response.status_code, response.get_json()

    return get


def one_of_each_stage(db) -> dict[Stage, int]:
    """An announcement in every stage (set directly where only time gets it there)."""
    now = utcnow()
    later = now + timedelta(hours=1)
    ids = {stage: db.send(stage.value) for stage in (Stage.SENT, Stage.WITHDRAWN, Stage.OVER)}
    for stage in (Stage.SCHEDULED, Stage.FAILED, Stage.CANCELLED):
        ids[stage] = db.send(stage.value, send_at=later)
    ids[Stage.EXPIRED] = db.send("expired", expires_at=later)
    db.set_notification(ids[Stage.WITHDRAWN], retracted_at=now)
    db.set_notification(ids[Stage.OVER], all_clear_at=now)
    db.set_notification(ids[Stage.FAILED], send_error="The author left.")
    db.set_notification(ids[Stage.CANCELLED], retracted_at=now)
    db.set_notification(ids[Stage.EXPIRED], expires_at=now - timedelta(seconds=1))
    return ids


def test_the_stage_filter_agrees_with_the_stage_rule(db):
    ids = one_of_each_stage(db)
    db.session.expire_all()
    everything = db.session.scalars(select(Notification)).all()
    now = utcnow()
    assert {notifications.stage(n, now) for n in everything} == set(Stage)
    for stage in Stage:
        in_sql = set(
            db.session.scalars(select(Notification.id).where(notifications.in_stage(stage, now)))
        )
        assert in_sql == {n.id for n in everything if notifications.stage(n, now) is stage}
        assert in_sql == {ids[stage]}


def test_newest_first_a_page_at_a_time(db, api):
    sent = [db.send(f"Notice {n}") for n in range(5)]
    seen, cursor, pages = [], "", 0
    while cursor is not None:
        status, body = api(f"?limit=2{'&cursor=' + cursor if cursor else ''}")
        assert status == 200, body
        assert len(body["notifications"]) <= 2
        seen += [n["id"] for n in body["notifications"]]
        cursor, pages = body["next_cursor"], pages + 1
    assert seen == sent[::-1] and pages == 3
    first = api("?limit=1")[1]["notifications"][0]
    assert first["title"] == "Notice 4" and first["stage"] == "sent"
    assert first["author"] == db.school.emails["admin"] and first["recipient_count"] == 6
    assert (first["read"], first["acknowledged"]) == (0, 0)


def test_filters_by_stage_and_time(db, api):
    ids = one_of_each_stage(db)
    for stage in ("scheduled", "sent", "withdrawn", "expired", "failed", "cancelled", "over"):
        status, body = api(f"?stage={stage}")
        assert status == 200, body
        assert [n["id"] for n in body["notifications"]] == [ids[Stage(stage)]]
        assert body["notifications"][0]["stage"] == stage
    cut = utcnow()
    newer = db.send("Newer")
    since = cut.isoformat().replace("+00:00", "Z")
    assert [n["id"] for n in api(f"?since={since}")[1]["notifications"]] == [newer]
    assert len(api(f"?since={since}&stage=withdrawn")[1]["notifications"]) == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?stage=bogus", "stage"),
        ("?priority=loud", "priority"),
        ("?since=yesterday", "since"),
        ("?since=2026-01-01T08:00:00", "since"),  # no time zone: which 08:00?
        ("?cursor=abc", "cursor"),
        ("?limit=-1", "limit"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(api, query, field):
    status, body = api(query)
    assert status == 400
    assert body["error"]["code"] == "validation_failed"
    assert body["error"]["details"] == {"field": field}


def test_teachers_list_only_what_they_may_see(app, client, make_user, auth):
    admin, mine, other = make_user("admin"), make_user("teacher"), make_user("teacher")
    students = make_user("student"), make_user("student")
    with app.app_context():
        session = get_session()
        for name, teacher, student in (("7a", mine, students[0]), ("7b", other, students[1])):
            school_class = classes.create(session, None, name)
            for person in (teacher, student):
                classes.ensure_member(session, school_class, session.get(type(person), person.id))
        session.commit()

        def send(author, title, audience):
            prepared = notifications.prepare(
                session,
                session.get(type(author), author.id),
                Draft(title=title, body="Body", audience=audience),
            )
            return notifications.send(session, prepared).notification.id

        to_7a, to_7b = to_class("7a"), to_class("7b")
        by_admin_to_7a = send(admin, "To 7a", to_7a)
        send(admin, "To 7b", to_7b)
        send(other, "Other's", to_7b)
        own = send(mine, "Own", to_7a)
    auth.signin(mine.email)
    body = client.get("/api/v1/notifications").get_json()
    assert [n["id"] for n in body["notifications"]] == [own, by_admin_to_7a]
