"""The audit log page (admins): filters by who, what and when, pages, and the filtered
entries as CSV with formula-like cells kept as text; teachers and students get 403."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest

from webapp.db import session_scope
from webapp.models import AuditEvent

from .conftest import PASSWORD
from .helpers import post_form
from .school import build_school

DAY1 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
DAY2 = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def school(app):
    school = build_school(app)
    with session_scope(app) as session:
        admin, teacher = school.ids["admin"], school.ids["t7b"]
        session.add_all(
            [
                AuditEvent(
                    at=DAY1, actor_id=teacher, action="notification.sent", subject="notification:1"
                ),
                AuditEvent(
                    at=DAY2,
                    actor_id=teacher,
                    action="notification.withdrawn",
                    subject="notification:1",
                ),
                AuditEvent(
                    at=DAY2, actor_id=admin, action="user.updated", subject="user:s7b_1@school.test"
                ),
                AuditEvent(
                    at=DAY2,
                    action="signin.failed",
                    subject='=HYPERLINK("http://evil.example/?x")',
                    address="203.0.113.9",
                    detail={"reason": "unknown_email"},
                ),
            ]
        )
        session.commit()
    return school


def signed_in(app, email: str):
    client = app.test_client()
    post_form(client, "/signin", {"email": email, "password": PASSWORD})
    return client


def rows_of(html: str) -> list[str]:
    """The actions of the entries listed, in order."""
    return re.findall(r'<tr id="audit-\d+" data-action="([^"]+)"', html)


def test_admins_filter_the_log_by_who_what_and_when(app, school):
    admin = signed_in(app, school.emails["admin"])
    everything = admin.get("/dashboard/audit").get_data(as_text=True)
    assert "notification.sent" in rows_of(everything) and "signin.succeeded" in rows_of(everything)

    by_teacher = rows_of(admin.get("/dashboard/audit?actor=T7B").get_data(as_text=True))
    assert by_teacher == ["notification.withdrawn", "notification.sent"]  # newest first
    by_family = rows_of(admin.get("/dashboard/audit?action=notification").get_data(as_text=True))
    assert by_family == ["notification.withdrawn", "notification.sent"]
    exact = rows_of(admin.get("/dashboard/audit?action=notification.sent").get_data(as_text=True))
    assert exact == ["notification.sent"]
    window = admin.get("/dashboard/audit?from=2026-01-20&to=2026-01-20").get_data(as_text=True)
    assert sorted(rows_of(window)) == ["notification.withdrawn", "signin.failed", "user.updated"]
    day1 = rows_of(admin.get("/dashboard/audit?to=2026-01-10").get_data(as_text=True))
    assert day1 == ["notification.sent"]
    bad = admin.get("/dashboard/audit?from=yesterday").get_data(as_text=True)
    assert "Ignored the from date" in bad

    partial = admin.get("/dashboard/audit?actor=T7B", headers={"HX-Request": "true"})
    html = partial.get_data(as_text=True)
    assert 'id="audit-results"' in html and "<html" not in html
    assert rows_of(html) == by_teacher


def test_the_log_is_paginated(app, school, monkeypatch):
    from webapp.dashboard import audit as audit_view

    monkeypatch.setattr(audit_view, "PER_PAGE", 2)
    admin = signed_in(app, school.emails["admin"])
    first = admin.get("/dashboard/audit?actor=T7B").get_data(as_text=True)
    assert rows_of(first) == ["notification.withdrawn", "notification.sent"]
    page1 = admin.get("/dashboard/audit?action=notification&page=1").get_data(as_text=True)
    all_pages = admin.get("/dashboard/audit").get_data(as_text=True)
    assert 'rel="next"' in all_pages and "Page 1 of" in all_pages
    assert "Page 1 of" not in page1  # two entries: one page
    second = admin.get("/dashboard/audit?page=2").get_data(as_text=True)
    assert "Page 2 of" in second and 'rel="prev"' in second
    ids = lambda html: re.findall(r'<tr id="audit-(\d+)"', html)  # noqa: E731
    assert len(ids(second)) == 2 and set(ids(second)).isdisjoint(ids(all_pages))


def test_the_csv_holds_the_filtered_entries_with_formulas_as_text(app, school):
    admin = signed_in(app, school.emails["admin"])
    response = admin.get("/dashboard/audit.csv?from=2026-01-20&to=2026-01-20")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert sorted(r["action"] for r in rows) == [
        "notification.withdrawn",
        "signin.failed",
        "user.updated",
    ]
    failed = next(r for r in rows if r["action"] == "signin.failed")
    assert failed["subject"] == '\'=HYPERLINK("http://evil.example/?x")'  # text, not a formula
    assert failed["address"] == "203.0.113.9" and failed["actor_email"] == ""
    assert failed["detail"] == '{"reason": "unknown_email"}'
    withdrawn = next(r for r in rows if r["action"] == "notification.withdrawn")
    assert (withdrawn["actor_email"], withdrawn["at"]) == ("t7b@school.test", DAY2.isoformat())


@pytest.mark.parametrize("handle", ["t7b", "s7b_1"])
def test_only_admins_read_the_log(app, school, handle):
    client = signed_in(app, school.emails[handle])
    for url in ("/dashboard/audit", "/dashboard/audit.csv", "/dashboard/audit?actor=admin"):
        response = client.get(url)
        assert response.status_code == 403
        assert "notification.withdrawn" not in response.get_data(as_text=True)


def test_the_log_is_linked_for_admins_only(app, school):
    admin = signed_in(app, school.emails["admin"]).get("/dashboard").get_data(as_text=True)
    teacher = signed_in(app, school.emails["t7b"]).get("/dashboard").get_data(as_text=True)
    assert 'href="/dashboard/audit"' in admin and 'href="/dashboard/audit"' not in teacher


def test_the_log_reads_german_for_a_german_browser(app, school):
    admin = signed_in(app, school.emails["admin"])
    german = {"Accept-Language": "de"}
    html = admin.get("/dashboard/audit", headers=german).get_data(as_text=True)
    assert '<html lang="de">' in html and "<h1>Protokoll</h1>" in html
    assert (
        "Alle Aktionen" in html and "neueste zuerst" in html and '<th scope="col">Wer</th>' in html
    )
    assert "Audit log" not in html and "newest first" not in html
    notice = admin.get("/dashboard/audit?from=yesterday", headers=german).get_data(as_text=True)
    assert "Von-Datum „yesterday“ ignoriert" in notice
