"""CSV roster import: all or nothing, every error with its line, on both databases."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import aliased
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from webapp.db import get_session
from webapp.errors import Forbidden
from webapp.models import AuditEvent, Guardianship, MemberRole, Membership, SchoolClass, User
from webapp.services import roster_import, users

from .conftest import PASSWORD, AuthActions, make_test_app
from .helpers import csrf_token_from, post_form

# The guardian comes first: her students are defined further down.
ROSTER = """\
email,name,role,classes,guardian_of,password,language
pat@school.test,Pat Parent,guardian,,ann@school.test; ben@school.test,,de
ann@school.test,Ann Archer,student,7b,,,
ben@school.test,Ben Baker,student,7B;8a,,a long student password,
tom@school.test,Tom Teacher,teacher,7b;8a,,,fr
"""


def run_import(
    app, data: bytes | str, actor_email: str | None = None, source: str = "roster.csv"
) -> roster_import.ImportReport:
    """Import through the service, as the command line (or `actor_email`) would."""
    with app.app_context():
        session = get_session()
        actor = users.get_by_email(session, actor_email) if actor_email else None
        return roster_import.import_csv(
            session, actor, data.encode() if isinstance(data, str) else data, source=source
        )


def rows(app, statement) -> list:
    with app.app_context():
        return get_session().execute(statement).all()


def table_sizes(app) -> dict[str, int]:
    """How many rows each roster table holds (audit included: a refused import writes none)."""
    return {
        model.__name__: rows(app, select(func.count()).select_from(model))[0][0]
        for model in (User, SchoolClass, Membership, Guardianship, AuditEvent)
    }


def roster_of(app) -> dict:
    """The roster as people would describe it."""
    people = rows(app, select(User.email, User.name, User.role, User.language).order_by(User.email))
    members = rows(
        app,
        select(SchoolClass.name, User.email, Membership.role)
        .select_from(Membership)
        .join(Membership.school_class)
        .join(Membership.user)
        .order_by(SchoolClass.name, User.email),
    )
    guardian, student = aliased(User), aliased(User)
    links = rows(
        app,
        select(guardian.email, student.email)
        .select_from(Guardianship)
        .join(guardian, Guardianship.guardian)
        .join(student, Guardianship.student)
        .order_by(student.email),
    )
    return {
        "people": [tuple(r) for r in people],
        "members": [tuple(r) for r in members],
        "links": [tuple(r) for r in links],
    }


def errors_of(report) -> list[tuple[int, str]]:
    return [(error.line, error.message) for error in report.errors]


def test_import_creates_then_updates_the_roster(any_database_url, tmp_path):
    app = make_test_app(any_database_url, tmp_path)
    try:
        report = run_import(app, ROSTER)
        assert report.errors == []
        assert report.describe() == (
            "Imported roster.csv: 4 users created, 0 updated, "
            "2 classes created, 5 memberships, 2 guardianships."
        )
        assert roster_of(app) == {
            "people": [
                ("ann@school.test", "Ann Archer", "student", None),
                ("ben@school.test", "Ben Baker", "student", None),
                ("pat@school.test", "Pat Parent", "guardian", "de"),
                ("tom@school.test", "Tom Teacher", "teacher", "fr"),
            ],
            "members": [
                ("7b", "ann@school.test", MemberRole.STUDENT),
                ("7b", "ben@school.test", MemberRole.STUDENT),
                ("7b", "tom@school.test", MemberRole.TEACHER),
                ("8a", "ben@school.test", MemberRole.STUDENT),
                ("8a", "tom@school.test", MemberRole.TEACHER),
            ],
            "links": [
                ("pat@school.test", "ann@school.test"),
                ("pat@school.test", "ben@school.test"),
            ],
        }
        audit = rows(app, select(AuditEvent.action, AuditEvent.detail))
        assert audit == [
            (
                "roster.imported",
                {
                    "source": "roster.csv",
                    "users_created": 4,
                    "users_updated": 0,
                    "classes_created": 2,
                    "memberships_added": 5,
                    "guardianships_added": 2,
                },
            )
        ]

        # Again, with Ann renamed and in one more class: an update, nothing doubled or lost.
        again = ROSTER.replace("Ann Archer,student,7b", "Ann Abbot,student,9c")
        report = run_import(app, again)
        assert report.describe() == (
            "Imported roster.csv: 0 users created, 1 updated, "
            "1 class created, 1 membership, 0 guardianships."
        )
        after = roster_of(app)
        assert ("ann@school.test", "Ann Abbot", "student", None) in after["people"]
        assert len(after["people"]) == 4 and len(after["links"]) == 2
        assert ("7b", "ann@school.test", MemberRole.STUDENT) in after["members"]  # kept
        assert ("9c", "ann@school.test", MemberRole.STUDENT) in after["members"]  # added
    finally:
        app.extensions["schoolbell.db"].kw["bind"].dispose()


def test_imported_people_sign_in_and_reimport_keeps_their_sessions(app, client, auth):
    run_import(app, ROSTER)
    assert auth.signin("ben@school.test", "a long student password").status_code == 302
    assert client.get("/inbox").status_code == 200
    report = run_import(app, ROSTER)  # the same password again is no change
    assert report.describe().startswith("Imported roster.csv: 0 users created, 0 updated")
    assert client.get("/inbox").status_code == 200
    run_import(app, ROSTER.replace("a long student password", "another good password"))
    assert client.get("/inbox").status_code == 302  # a new password ends old sessions


def test_existing_people_are_matched_by_email_in_any_case(app, make_user):
    make_user("student", email="ann@school.test", name="Old Name")
    report = run_import(app, ROSTER.replace("ann@school.test", "ANN@School.Test"))
    assert report.errors == []
    assert (report.users_created, report.users_updated) == (3, 1)
    people = roster_of(app)["people"]
    assert ("ann@school.test", "Ann Archer", "student", None) in people and len(people) == 4


def test_guardian_of_may_name_students_already_at_school(app, make_user):
    make_user("student", email="zoe@school.test", name="Zoe")
    report = run_import(
        app, "email,name,role,guardian_of\npat@school.test,Pat,guardian,zoe@school.test\n"
    )
    assert report.errors == [] and report.guardianships_added == 1


BAD_ROSTER = """\
email,name,role,classes,guardian_of,password
ann@school.test,Ann Archer,student,7b,,
not-an-email,Nobody,student,,,

ben@school.test,,janitor,,,
"cat@school.test","Cat
Multiline",student,!!bad!!,,short
ANN@school.test,Ann Again,student,,,
pat@school.test,Pat,guardian,7b,tom@school.test;nobody@school.test,
tom@school.test,Tom,teacher,,ann@school.test,
"""


def test_bad_rows_are_all_reported_by_line_and_nothing_changes(app, make_user):
    make_user("student", email="existing@school.test")
    before = table_sizes(app)
    report = run_import(app, BAD_ROSTER)
    assert errors_of(report) == [
        (3, "'not-an-email' is not a valid email address: An email address must have an @-sign."),
        (5, "A name is required."),
        (5, "Unknown role 'janitor'; use one of admin, teacher, student, guardian."),
        # A quoted value spans lines 6-7: the row is reported where it starts.
        (6, "Passwords need at least 8 characters."),
        (6, "Invalid class name '!!bad!!': use 1-64 letters, digits, spaces, '.', '_' or '-'."),
        (8, "ann@school.test already appears on line 2."),
        (9, "pat@school.test is a guardian; only students and teachers join classes."),
        (9, "tom@school.test is a teacher (line 10), not a student."),
        (9, "No student with email nobody@school.test in this file or in the school."),
        (10, "guardian_of is only for guardians; this row is a teacher."),
    ]
    assert report.describe() == "Nothing was imported from roster.csv: 10 errors."
    assert table_sizes(app) == before


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("email,name,role,grade", "unknown columns: 'grade'"),
        ("email,name", "missing columns: 'role'"),
        ("mail,name,role,Classes", "unknown columns: 'mail'; missing columns: 'email'"),
        ("email,name,role,role", "repeated columns: 'role'"),
    ],
)
def test_wrong_columns_are_one_error_on_line_1(app, header, named):
    before = table_sizes(app)
    report = run_import(app, f"{header}\nann@school.test,Ann,student,x\n")
    [(line, message)] = errors_of(report)
    assert line == 1 and named in message
    assert "The columns are email, name, role (required)" in message
    assert table_sizes(app) == before


def test_a_file_that_is_not_utf8_is_refused_clearly(app):
    data = "email,name,role\nzoe@school.test,Zoë,student\n".encode("latin-1")
    report = run_import(app, data)
    assert errors_of(report) == [(2, "file is not UTF-8 encoded; save it as 'CSV UTF-8'")]
    assert table_sizes(app)["User"] == 0


def test_a_byte_order_mark_and_any_header_case_are_fine(app):
    data = "\ufeffEmail, Name ,ROLE\r\nzoe@school.test,Zoë,student\r\n".encode()
    report = run_import(app, data)
    assert report.errors == [] and report.users_created == 1
    assert roster_of(app)["people"] == [("zoe@school.test", "Zoë", "student", None)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file is empty"),
        (b"\n\n", "The file is empty"),
        (b"email,name,role\n", "The file has a header but no rows of people."),
        (b"email,name,role\n,,\n", "The file has a header but no rows of people."),
    ],
)
def test_empty_files_are_refused_clearly(app, data, message):
    [(line, text)] = errors_of(run_import(app, data))
    assert line == 1 and message in text


def test_extra_values_on_a_line_are_reported(app):
    report = run_import(app, "email,name,role\nann@school.test,Archer, Ann,student\n")
    assert errors_of(report) == [
        (
            2,
            "This line has 4 values but the header names 3 columns "
            "(a comma inside a value needs quotes).",
        )
    ]


def test_more_than_5000_rows_are_refused(app):
    lines = ["email,name,role"] + [f"s{n}@school.test,S {n},student" for n in range(5_001)]
    report = run_import(app, "\n".join(lines))
    [(line, message)] = errors_of(report)
    assert line == 5_002 and "at most 5,000 people per file" in message
    assert table_sizes(app)["User"] == 0


def test_only_admins_may_import(app, make_user):
    make_user("teacher", email="tom@school.test")
    with pytest.raises(Forbidden):
        run_import(app, ROSTER, actor_email="tom@school.test")


def test_an_admin_cannot_demote_themselves_by_import(app, make_user):
    make_user("admin", email="ada@school.test")
    report = run_import(
        app, "email,name,role\nada@school.test,Ada,teacher\n", actor_email="ada@school.test"
    )
    assert errors_of(report) == [(2, "You cannot remove your own administrator role.")]


# The upload page ------------------------------------------------------------------


def upload(client, data: bytes, filename: str = "roster.csv"):
    return post_form(
        client,
        "/roster/import",
        {"file": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )


def test_upload_page_imports_and_shows_the_summary(app, client, admin):
    page = client.get("/roster/import").get_data(as_text=True)
    assert '<label for="file">CSV file</label>' in page and 'type="file"' in page
    response = upload(client, ROSTER.encode())
    assert response.status_code == 302
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert (
        "Imported roster.csv: 4 users created, 0 updated, 2 classes created, "
        "5 memberships, 2 guardianships."
    ) in html
    event = rows(app, select(AuditEvent).where(AuditEvent.action == "roster.imported"))[0][0]
    assert event.actor_id == admin.id and event.address == "127.0.0.1"


def test_upload_page_lists_errors_and_says_nothing_changed(app, client, admin):
    before = table_sizes(app)
    response = upload(client, BAD_ROSTER.encode(), filename="class-lists.csv")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Nothing was changed" in html
    assert "class-lists.csv has 10 problems. Nothing was imported" in html
    assert "<tr><td>5</td><td>A name is required.</td></tr>" in html
    assert table_sizes(app) == before


def test_upload_page_without_a_file(client, admin):
    response = post_form(client, "/roster/import", {})
    assert response.status_code == 400
    assert "Choose a CSV file to import." in response.get_data(as_text=True)


def test_an_oversized_upload_is_413_with_a_clear_message(app, client, admin):
    before = table_sizes(app)
    too_big = b"email,name,role\n" + b"x" * app.config["MAX_UPLOAD_BYTES"]
    token = csrf_token_from(client.get("/roster/import").get_data(as_text=True))
    # Encoded in memory: the test client would spool a big body to a file it never closes.
    boundary, body = encode_multipart(
        {
            "csrf_token": token,
            "file": FileStorage(
                io.BytesIO(too_big), filename="roster.csv", content_type="text/csv"
            ),
        }
    )
    assert len(body) > app.config["MAX_UPLOAD_BYTES"]
    response = client.post(
        "/roster/import", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert response.status_code == 413
    assert "The upload is too large." in response.get_data(as_text=True)
    assert table_sizes(app) == before


# The command line -----------------------------------------------------------------


def test_cli_imports_a_file(app, runner, tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text(ROSTER, encoding="utf-8")
    result = runner.invoke(args=["import-roster", str(path)])
    assert result.exit_code == 0, result.output
    assert "4 users created, 0 updated, 2 classes created, 5 memberships" in result.stdout
    assert table_sizes(app)["User"] == 4


def test_cli_reports_errors_and_exits_1(app, runner, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(BAD_ROSTER, encoding="utf-8")
    result = runner.invoke(args=["import-roster", str(path)])
    assert result.exit_code == 1
    assert "line 5: A name is required." in result.stderr
    assert "Nothing was imported" in result.stderr
    assert table_sizes(app)["User"] == 0


def test_signin_still_works_for_people_made_before_an_import(app, make_user):
    # An import must not touch people it does not name.
    make_user("teacher", email="kim@school.test")
    run_import(app, ROSTER)
    assert AuthActions(app.test_client()).signin("kim@school.test", PASSWORD).status_code == 302
