"""A recipient's inbox: their own announcements, newest first, without retracted ones;
reading and confirming from the page (no socket needed)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, update

from webapp.db import session_scope, utcnow
from webapp.models import Delivery, DeliveryState, Notification, User
from webapp.services import notifications
from webapp.services.audience import AudienceSpec, ClassTarget

from .helpers import csrf_token_from
from .school import build_school


@pytest.fixture
def school(app):
    return build_school(app)


def send(app, school, title: str, *, to: str = "7b", **fields) -> int:
    """Send as the admin to a class's students and guardians; the new id."""
    spec = AudienceSpec(classes=(ClassTarget(to, frozenset(["students", "guardians"])),))
    with app.app_context(), session_scope(app) as session:
        draft = notifications.Draft(title=title, body="Body", audience=spec, **fields)
        admin = session.get(User, school.ids["admin"])
        prepared = notifications.prepare(session, admin, draft)
        return notifications.send(session, prepared).notification.id


def state_of(app, school, handle: str, notification_id: int) -> DeliveryState | None:
    with app.app_context(), session_scope(app) as session:
        return session.scalar(
            select(Delivery.state).where(
                Delivery.notification_id == notification_id,
                Delivery.user_id == school.ids[handle],
            )
        )


def item_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<article id="inbox-item-(\d+)"', html)]


def test_the_inbox_lists_ones_own_newest_first_withdrawn_ones_as_withdrawn(
    app, client, auth, school
):
    first = send(app, school, "First")
    send(app, school, "For 7a", to="7a")
    withdrawn = send(app, school, "Withdrawn")
    second = send(app, school, "Second")
    with app.app_context(), session_scope(app) as session:
        session.execute(
            update(Notification).where(Notification.id == withdrawn).values(retracted_at=utcnow())
        )
        session.commit()
    auth.signin(school.emails["s7b_1"])
    page = client.get("/inbox").get_data(as_text=True)
    assert item_ids(page) == [second, withdrawn, first]
    assert item_ids(client.get("/inbox/list").get_data(as_text=True)) == [second, withdrawn, first]
    item = page[page.index(f'id="inbox-item-{withdrawn}"') : page.index(f'id="inbox-item-{first}"')]
    assert 'data-stage="withdrawn"' in item and "The sender withdrew this announcement." in item
    assert "Mark as read" not in item and 'data-stage="withdrawn"' not in page.split(item)[0]


def test_open_brings_the_announcement_a_notification_leads_to_into_view(app, client, auth, school):
    first = send(app, school, "First")
    send(app, school, "Second")
    auth.signin(school.emails["s7b_1"])
    focused = re.compile(r'<article id="inbox-item-(\d+)"[^>]*\sautofocus')
    assert focused.findall(client.get(f"/inbox?open={first}").get_data(as_text=True)) == [
        str(first)
    ]
    assert focused.findall(client.get("/inbox?open=nonsense").get_data(as_text=True)) == []


def test_confirming_from_the_page_moves_the_receipt_and_returns_the_item(app, client, auth, school):
    nid = send(app, school, "Please confirm", require_ack=True)
    auth.signin(school.emails["s7b_1"])
    token = csrf_token_from(client.get("/inbox").get_data(as_text=True))
    response = client.post(
        f"/inbox/{nid}/receipt", data={"state": "acknowledged"}, headers={"X-CSRFToken": token}
    )
    item = response.get_data(as_text=True)
    assert response.status_code == 200
    assert item_ids(item) == [nid]
    assert 'data-state="acknowledged"' in item and ">Confirm</button>" not in item
    assert state_of(app, school, "s7b_1", nid) is DeliveryState.ACKNOWLEDGED
    assert state_of(app, school, "s7b_2", nid) is DeliveryState.PENDING


def test_a_receipt_for_someone_elses_announcement_is_not_found(app, client, auth, school):
    nid = send(app, school, "For 7a", to="7a")
    auth.signin(school.emails["s7b_1"])
    token = csrf_token_from(client.get("/inbox").get_data(as_text=True))
    response = client.post(
        f"/inbox/{nid}/receipt", data={"state": "read"}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 404
    assert state_of(app, school, "s7b_1", nid) is None
    assert state_of(app, school, "s7a_1", nid) is DeliveryState.PENDING
