"""Who may see an announcement's status: admins, the author, teachers of a targeted
class; nobody else, and an unknown id looks the same as a forbidden one."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from webapp.errors import NotFound
from webapp.models import Notification
from webapp.services import classes, visibility
from webapp.services.audience import AudienceSpec, ClassTarget

from .school_db import own_school, session_on, to_class


@pytest.fixture
def db(shared_school):
    """The shared school (both backends), with a fresh session."""
    yield from session_on(*shared_school)


@pytest.fixture
def any_db(any_database_url, tmp_path):
    """A school of this test's own on SQLite and on PostgreSQL (for tests that change
    who teaches what)."""
    yield from own_school(any_database_url, tmp_path)


VIEWERS = [
    # (author, audience, handle, may see)
    ("admin", "class 7b", "admin", True),
    ("admin", "class 7b", "t7b", True),
    ("admin", "class 7b", "t7a", False),
    ("admin", "class 7b", "s7b_1", False),
    ("admin", "class 7b", "g7b_1", False),
    ("t7b", "class 7b", "t7b", True),
    ("t7b", "class 7b", "admin", True),
    ("t7b", "class 7b", "t7a", False),
    ("t7b", "people", "t7b", True),
    ("t7b", "people", "admin", True),
    ("t7b", "people", "t7a", False),
    ("t7b", "people", "s7b_1", False),
    ("admin", "everyone", "t7b", False),
    ("admin", "everyone", "s7a_1", False),
]


def test_status_is_visible_to_author_admins_and_teachers_of_the_class(db):
    specs = {
        "class 7b": to_class("7b", "students", "guardians"),
        "people": AudienceSpec(users=(db.school.emails["s7b_1"], db.school.emails["g7b_1"])),
        "everyone": AudienceSpec(everyone=True),
    }
    sent = {
        (author, audience): db.send(by=author, audience=specs[audience])
        for author, audience, _, _ in VIEWERS
    }
    for author, audience, handle, may_see in VIEWERS:
        case = (author, audience, handle)
        notification_id = sent[author, audience]
        viewer = db.user(handle)
        notification = db.session.get(Notification, notification_id)
        listed = db.session.scalar(
            select(Notification.id).where(
                Notification.id == notification_id, visibility.visible_to(viewer)
            )
        )
        assert (listed is not None) is may_see, case
        if may_see:
            assert visibility.viewable(db.session, viewer, notification_id) is notification
        else:
            with pytest.raises(NotFound) as caught:
                visibility.viewable(db.session, viewer, notification_id)
            assert caught.value.code == "notification_not_found", case


@pytest.mark.parametrize("handle", ["admin", "t7b", "s7b_1"])
def test_an_unknown_id_looks_the_same_as_a_forbidden_one(db, handle):
    with pytest.raises(NotFound) as unknown:
        visibility.viewable(db.session, db.user(handle), 98765)
    assert unknown.value.code == "notification_not_found"
    assert "98765" in unknown.value.message


def may_view(db, handle: str, notification_id: int) -> bool:
    """Whether `handle` gets the announcement from viewable() (True) or NotFound."""
    try:
        visibility.viewable(db.session, db.user(handle), notification_id)
    except NotFound:
        return False
    return True


def test_teachers_see_it_while_they_teach_one_of_its_classes(any_db):
    """Any targeted class counts, whichever part of it was chosen; and it is who teaches
    the class now that counts, not who taught it when it was sent."""
    both = AudienceSpec(
        classes=(
            ClassTarget("7a", frozenset(["guardians"])),
            ClassTarget("7b", frozenset(["students"])),
        )
    )
    by_admin = any_db.send(audience=both)
    by_t7a = any_db.send(by="t7a", audience=to_class("7a"))
    assert may_view(any_db, "t7a", by_admin) and may_view(any_db, "t7b", by_admin)
    seventh_a = classes.get_by_name(any_db.session, "7a")
    classes.remove_member(any_db.session, any_db.user("admin"), seventh_a.id, any_db.id("t7a"))
    assert not may_view(any_db, "t7a", by_admin)
    assert may_view(any_db, "t7a", by_t7a)  # their own, still
    assert may_view(any_db, "t7b", by_admin)
