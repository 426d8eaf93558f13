"""Who a send reaches beyond open tabs, on SQLite and PostgreSQL: the two fan-outs
queued with every send, and the push and e-mail jobs each queues for exactly the
recipients no tab (or device) has reached."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from webapp.db import utcnow
from webapp.models import Delivery, Job, JobState, Priority, PushSubscription, User
from webapp.services import jobs, reach

from .school_db import T1, S, session_on, to_class


@pytest.fixture
def db(shared_school):
    yield from session_on(*shared_school)


def subscribe(db, handle: str) -> int:
    """A push subscription for `handle` (its endpoint is never called here)."""
    sub = PushSubscription(
        user_id=db.id(handle),
        endpoint=f"https://fcm.googleapis.com/fcm/send/{secrets.token_urlsafe(12)}",
        p256dh="k",
        auth="a",
    )
    db.session.add(sub)
    db.session.commit()
    return sub.id


def run_job(db, key: str) -> JobState | None:
    """Run a queued job now, as a runner would after claiming it."""
    db.session.expire_all()
    job = db.session.scalar(select(Job).where(Job.key == key))
    db.session.commit()
    ref = jobs.JobRef(
        job.id,
        job.kind,
        job.key,
        job.attempts + 1,
        job.notification_id,
        job.delivery_id,
        job.subscription_id,
        job.payload,
    )
    return jobs.run(db.app, ref)


def queued(db, kind: str, notification_id: int) -> dict[str, set]:
    """handle -> subscription ids (push) or {None} (e-mail) of the jobs of `kind`."""
    db.session.expire_all()
    handles = {v: k for k, v in db.school.ids.items()}
    found: dict[str, set] = {}
    for user_id, sub_id in db.session.execute(
        select(Delivery.user_id, Job.subscription_id)
        .join(Delivery, Delivery.id == Job.delivery_id)
        .where(Job.kind == kind, Job.notification_id == notification_id)
    ):
        found.setdefault(handles[user_id], set()).add(sub_id)
    db.session.commit()
    return found


def set_user(db, handle: str, **values) -> None:
    db.session.execute(update(User).where(User.id == db.id(handle)).values(**values))
    db.session.commit()


@pytest.fixture
def subscriptions(db):
    """Two devices for s7a_1, one each for s7a_2, s7a_3 and g7a_1; s7a_3 turned pushes
    off; g7a_2 has none. Undone afterwards (the school is shared)."""
    subs = {
        "s7a_1": {subscribe(db, "s7a_1"), subscribe(db, "s7a_1")},
        "s7a_2": {subscribe(db, "s7a_2")},
        "s7a_3": {subscribe(db, "s7a_3")},
        "g7a_1": {subscribe(db, "g7a_1")},
    }
    set_user(db, "s7a_3", push_enabled=False)
    yield subs
    set_user(db, "s7a_3", push_enabled=True)
    db.session.execute(PushSubscription.__table__.delete())
    db.session.commit()


def test_every_send_queues_a_push_and_an_email_fan_out_with_its_delays(db):
    before = utcnow()
    normal = db.send("Trip")
    emergency = db.send("Fire drill", priority=Priority.EMERGENCY.value)
    db.session.expire_all()
    due = {
        job.key: job.due_at
        for job in db.session.scalars(
            select(Job).where(Job.notification_id.in_([normal, emergency]))
        )
    }
    assert set(due) == {
        f"reach-push:{normal}",
        f"reach-email:{normal}",
        f"reach-push:{emergency}",
        f"reach-email:{emergency}",
    }
    delays = reach.Delays()
    assert due[f"reach-push:{normal}"] - before >= timedelta(seconds=delays.push_after_s)
    assert due[f"reach-email:{normal}"] - before >= timedelta(seconds=delays.email_after_s)
    for kind in ("reach-push", "reach-email"):
        assert due[f"{kind}:{emergency}"] <= utcnow()  # at once


def test_pushes_go_to_every_device_of_those_no_tab_reached_who_want_them(db, subscriptions):
    n = db.send("Trip", audience=to_class("7a", "students", "guardians"))
    db.receipts(("s7a_2", n, S.DELIVERED, T1))  # an open tab showed it
    assert run_job(db, f"reach-push:{n}") is JobState.DONE
    # s7a_2: a tab reported it; s7a_3: pushes off; g7a_2: no device.
    assert queued(db, reach.PUSH, n) == {
        "s7a_1": subscriptions["s7a_1"],
        "g7a_1": subscriptions["g7a_1"],
    }
    # Running the fan-out again (a runner that died before recording it) adds nothing.
    run_job(db, f"reach-push:{n}")
    assert len(queued(db, reach.PUSH, n)["s7a_1"]) == 2


def test_an_emergency_pushes_to_every_device_whatever_was_chosen_or_seen(db, subscriptions):
    n = db.send(
        "Lockdown",
        priority=Priority.EMERGENCY.value,
        audience=to_class("7a", "students", "guardians"),
    )
    db.receipts(("s7a_2", n, S.DELIVERED, T1))
    run_job(db, f"reach-push:{n}")
    assert queued(db, reach.PUSH, n) == subscriptions


def test_a_withdrawn_announcement_pushes_nothing(db, subscriptions):
    n = db.send("Oops", audience=to_class("7a", "students"))
    db.set_notification(n, retracted_at=utcnow())
    assert run_job(db, f"reach-push:{n}") is JobState.CANCELLED
    assert queued(db, reach.PUSH, n) == {}


@pytest.fixture
def smtp(db):
    db.app.config["SMTP_URL"] = "smtp://127.0.0.1:1"  # never reached by the fan-out
    yield
    db.app.config["SMTP_URL"] = ""


def test_emails_go_to_those_neither_a_tab_nor_a_device_reached(db, smtp):
    n = db.send("Trip", audience=to_class("7b", "students", "guardians"))
    db.receipts(("s7b_1", n, S.DELIVERED, T1))  # a tab showed it
    db.session.execute(
        update(Delivery)
        .where(Delivery.notification_id == n, Delivery.user_id == db.id("s7b_2"))
        .values(pushed_at=utcnow())  # a push service took a push for their device
    )
    db.session.commit()
    set_user(db, "g7b_1", email_enabled=False)
    try:
        assert run_job(db, f"reach-email:{n}") is JobState.DONE
    finally:
        set_user(db, "g7b_1", email_enabled=True)
    assert set(queued(db, reach.EMAIL, n)) == {"s7b_3", "g7b_2", "g7b_3"}


def test_an_emergency_emails_everyone_who_has_not_read_it(db, smtp):
    n = db.send(
        "Evacuate",
        priority=Priority.EMERGENCY.value,
        audience=to_class("7b", "students", "guardians"),
    )
    db.receipts(("s7b_1", n, S.READ, T1), ("s7b_2", n, S.DELIVERED, T1))
    set_user(db, "g7b_1", email_enabled=False)
    try:
        run_job(db, f"reach-email:{n}")
    finally:
        set_user(db, "g7b_1", email_enabled=True)
    assert set(queued(db, reach.EMAIL, n)) == {"s7b_2", "s7b_3", "g7b_1", "g7b_2", "g7b_3"}


def test_without_smtp_no_email_is_queued(db):
    n = db.send("Trip", audience=to_class("7b", "students"))
    assert run_job(db, f"reach-email:{n}") is JobState.CANCELLED
    db.session.expire_all()
    job = db.session.scalar(select(Job).where(Job.key == f"reach-email:{n}"))
    assert job.last_error == "no SMTP server is configured"
    assert queued(db, reach.EMAIL, n) == {}


@pytest.mark.parametrize(
    "state, pushed, push_reason, email_reason",
    [
        (S.PENDING, False, None, None),
        (S.DELIVERED, False, "already delivered (tab)", "already delivered (tab)"),
        (S.PENDING, True, None, "a device was reached by push"),
        (S.READ, False, "already read (tab)", "already read"),
    ],
)
def test_a_queued_job_checks_again_before_it_sends(db, state, pushed, push_reason, email_reason):
    n = db.send("Trip", audience=to_class("7b", "students"))
    if state is not S.PENDING:
        db.receipts(("s7b_1", n, state, T1))
    delivery = db.delivery(n, "s7b_1")
    if pushed:
        delivery.pushed_at = utcnow()
    notification, user = delivery.notification, db.user("s7b_1")
    assert reach.push_still_needed(notification, delivery, user) == push_reason
    assert reach.email_still_needed(notification, delivery, user) == email_reason
    db.session.rollback()
