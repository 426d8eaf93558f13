"""Roster pages: people, classes, guardians; admins only, CSRF on every change, audited."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from webapp.db import get_session
from webapp.models import AuditEvent, Guardianship, MemberRole, Membership, SchoolClass, User
from webapp.services import classes

from .conftest import PASSWORD, AuthActions
from .helpers import post_form


def query(app, statement):
    """Run a query in a fresh session of its own, as another process would see the data."""
    with app.app_context():
        return get_session().execute(statement).all()


def count(app, model) -> int:
    return query(app, select(func.count()).select_from(model))[0][0]


def user_by_email(app, email: str) -> User | None:
    rows = query(app, select(User).where(User.email == email))
    return rows[0][0] if rows else None


def actions(app) -> list[str]:
    return [action for (action,) in query(app, select(AuditEvent.action).order_by(AuditEvent.id))]


def roster_state(app) -> tuple:
    """Everything a roster change could touch, to prove that nothing changed."""
    return (
        query(
            app,
            select(
                User.id,
                User.email,
                User.name,
                User.role,
                User.language,
                User.active,
                User.session_epoch,
                User.password_hash,
            ).order_by(User.id),
        ),
        query(app, select(SchoolClass.id, SchoolClass.name).order_by(SchoolClass.id)),
        query(
            app,
            select(Membership.class_id, Membership.user_id, Membership.role).order_by(
                Membership.id
            ),
        ),
        query(
            app, select(Guardianship.guardian_id, Guardianship.student_id).order_by(Guardianship.id)
        ),
        query(
            app,
            select(AuditEvent.action)
            .where(AuditEvent.action.regexp_match("^(user|class|guardian|roster)[.]"))
            .order_by(AuditEvent.id),
        ),
    )


@pytest.fixture
def school(app, make_user):
    """A student in class 7b with a guardian, a teacher, and a second, unlinked guardian."""
    student = make_user("student", email="sam@school.test", name="Sam Student")
    # No passwords where no test signs in: hashing is deliberately slow.
    guardian = make_user("guardian", email="gina@school.test", name="Gina Guardian", password=None)
    other_guardian = make_user(
        "guardian", email="otto@school.test", name="Otto Other", password=None
    )
    teacher = make_user("teacher", email="tom@school.test", name="Tom Teacher")
    with app.app_context():
        session = get_session()
        school_class = classes.create(session, None, "7b")
        classes.ensure_member(session, school_class, session.get(User, student.id))
        classes.ensure_guardianship(
            session, session.get(User, guardian.id), session.get(User, student.id)
        )
        session.commit()
        class_id = school_class.id
    return SimpleNamespace(
        student=student,
        guardian=guardian,
        other_guardian=other_guardian,
        teacher=teacher,
        class_id=class_id,
    )


class Roots(HTMLParser):
    """Collects the top-level elements of an HTML fragment."""

    def __init__(self):
        super().__init__()
        self.depth, self.roots = 0, []

    def handle_starttag(self, tag, attrs):
        if self.depth == 0:
            self.roots.append((tag, dict(attrs)))
        if tag not in ("input", "br", "img", "meta", "link", "hr"):
            self.depth += 1

    def handle_endtag(self, tag):
        self.depth -= 1


# People: list and search -----------------------------------------------------------


def test_people_list_shows_role_status_and_classes(client, admin, school, make_user):
    make_user("teacher", email="gone@school.test", name="Gone Teacher", active=False)
    response = client.get("/roster/users")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="user-results"' in html
    for text in ("Sam Student", "sam@school.test", "Gina Guardian", "Tom Teacher", "Ada Admin"):
        assert text in html
    sam_row = html[html.index(f'id="user-{school.student.id}"') :]
    sam_row = sam_row[: sam_row.index("</tr>")]
    assert "badge role-student" in sam_row and "Active" in sam_row and "<li>7b</li>" in sam_row
    gone_row = html[html.index("Gone Teacher") :]
    assert 'class="badge inactive">Inactive' in gone_row[: gone_row.index("</tr>")]


@pytest.mark.parametrize(
    ("params", "shown", "hidden"),
    [
        ({"q": "gina"}, ["Gina Guardian"], ["Sam Student", "Tom Teacher"]),
        ({"q": "TOM@school"}, ["Tom Teacher"], ["Sam Student", "Gina Guardian"]),
        ({"role": "guardian"}, ["Gina Guardian", "Otto Other"], ["Sam Student", "Tom Teacher"]),
        ({"q": "o", "role": "teacher"}, ["Tom Teacher"], ["Otto Other", "Sam Student"]),
        ({"q": "nobody-like-this"}, ["Nobody matches"], ["Sam Student"]),
    ],
)
def test_search_by_name_email_and_role(client, admin, school, params, shown, hidden):
    html = client.get("/roster/users", query_string=params).get_data(as_text=True)
    for text in shown:
        assert text in html
    for text in hidden:
        assert text not in html


def test_htmx_search_returns_only_the_results_element(client, admin, school):
    response = client.get("/roster/users?q=sam", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    parser = Roots()
    parser.feed(html)
    assert [(tag, attrs.get("id")) for tag, attrs in parser.roots] == [("section", "user-results")]
    assert "Sam Student" in html and "Tom Teacher" not in html
    assert "HX-Request" in response.headers["Vary"]
    # A history restore (back button after the cache is gone) needs the whole page.
    restore = client.get(
        "/roster/users?q=sam", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in restore.get_data(as_text=True)


def test_the_list_is_paginated(client, admin, make_user):
    for n in range(30):
        make_user("student", email=f"pupil{n:02}@school.test", name=f"Pupil {n:02}", password=None)
    first = client.get("/roster/users?role=student").get_data(as_text=True)
    assert "30 people" in first and "Page 1 of 2" in first
    assert "Pupil 24" in first and "Pupil 25" not in first
    second = client.get("/roster/users?role=student&page=2").get_data(as_text=True)
    assert "Page 2 of 2" in second and "Pupil 25" in second and "Pupil 24" not in second


def test_an_unknown_role_filter_is_a_clear_400(client, admin):
    response = client.get("/roster/users?role=janitor")
    assert response.status_code == 400
    assert "Unknown role" in response.get_data(as_text=True)


# People: create, edit, deactivate --------------------------------------------------

NEW_PERSON = {
    "email": "Nia@School.test",
    "name": "Nia New",
    "role": "teacher",
    "language": "de",
    "password": "a good long password",
}


def test_admin_creates_a_person_who_can_then_sign_in(app, client, admin):
    response = post_form(client, "/roster/users/new", NEW_PERSON)
    assert response.status_code == 302
    user = user_by_email(app, "nia@school.test")
    assert (user.name, user.role, user.language, user.active) == ("Nia New", "teacher", "de", True)
    assert response.headers["Location"] == f"/roster/users/{user.id}/edit"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Added Nia New (nia@school.test)." in page
    other = AuthActions(app.test_client())
    assert other.signin("nia@school.test", "a good long password").status_code == 302
    assert "user.created" in actions(app)


def test_duplicate_email_is_409_with_the_form_kept_filled(app, client, admin, school):
    before = count(app, User)
    response = post_form(client, "/roster/users/new", {**NEW_PERSON, "email": "SAM@school.test"})
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "A user with email sam@school.test already exists." in html
    assert 'value="SAM@school.test"' in html and 'value="Nia New"' in html
    assert '<option selected value="teacher">' in html
    assert 'aria-invalid="true"' in html
    assert "a good long password" not in html  # passwords are never sent back
    assert count(app, User) == before


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "not-an-email", "is not a valid email address"),
        ("email", "", "is not a valid email address"),
        ("name", "   ", "A name is required."),
        ("role", "janitor", "Unknown role &#39;janitor&#39;"),
        ("language", "xx", "Unsupported language"),
        ("password", "short", "Passwords need at least 8 characters."),
    ],
)
def test_invalid_person_gives_400_with_the_message(app, client, admin, field, value, message):
    before = roster_state(app)
    response = post_form(client, "/roster/users/new", {**NEW_PERSON, field: value})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in html
    assert f'id="{field}-errors"' in html  # shown under the field it concerns
    assert roster_state(app) == before


def test_admin_edits_a_person(app, client, admin, school):
    url = f"/roster/users/{school.teacher.id}/edit"
    page = client.get(url).get_data(as_text=True)
    assert 'value="tom@school.test"' in page
    response = post_form(
        client,
        url,
        {
            "email": "tom@school.test",
            "name": "Tom Tutor",
            "role": "admin",
            "language": "fr",
            "password": "",
        },
    )
    assert response.status_code == 302
    user = user_by_email(app, "tom@school.test")
    assert (user.name, user.role, user.language) == ("Tom Tutor", "admin", "fr")
    assert user.password_hash == school.teacher.password_hash  # empty keeps the password
    assert "Saved Tom Tutor." in client.get(url).get_data(as_text=True)
    assert "user.updated" in actions(app)


def test_edit_errors_keep_the_typed_values(app, client, admin, school):
    url = f"/roster/users/{school.teacher.id}/edit"
    response = post_form(
        client,
        url,
        {"email": "gina@school.test", "name": "Tom Changed", "role": "teacher", "language": "en"},
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "already exists" in html and 'value="Tom Changed"' in html
    assert user_by_email(app, "tom@school.test").name == "Tom Teacher"


def test_a_new_password_signs_the_person_out_and_works(app, client, admin, school):
    tom = app.test_client()
    theirs = AuthActions(tom)
    theirs.signin("tom@school.test")
    url = f"/roster/users/{school.teacher.id}/edit"
    post_form(
        client,
        url,
        {
            "email": "tom@school.test",
            "name": "Tom Teacher",
            "role": "teacher",
            "language": "en",
            "password": "brand new secret",
        },
    )
    assert tom.get("/dashboard").status_code == 302  # old session ended
    assert theirs.signin("tom@school.test", PASSWORD).status_code == 401
    assert theirs.signin("tom@school.test", "brand new secret").status_code == 302


def test_admin_cannot_remove_their_own_admin_role(app, client, admin):
    response = post_form(
        client,
        f"/roster/users/{admin.id}/edit",
        {"email": admin.email, "name": admin.name, "role": "teacher", "language": "en"},
    )
    assert response.status_code == 400
    assert "You cannot remove your own administrator role." in response.get_data(as_text=True)
    assert user_by_email(app, admin.email).role == "admin"


def test_deactivation_ends_sessions_and_blocks_sign_in(app, client, admin, school):
    sam = app.test_client()
    AuthActions(sam).signin("sam@school.test")
    assert sam.get("/inbox").status_code == 200
    url = f"/roster/users/{school.student.id}"
    response = post_form(client, url + "/deactivate", {}, page=url + "/edit")
    assert response.status_code == 302
    page = client.get(url + "/edit").get_data(as_text=True)
    assert "Sam Student is deactivated and signed out everywhere." in page
    assert "Reactivate" in page
    assert sam.get("/inbox").status_code == 302  # the open session no longer works
    refused = AuthActions(sam).signin("sam@school.test")
    assert refused.status_code == 401 and "disabled" in refused.get_data(as_text=True)

    post_form(client, url + "/reactivate", {}, page=url + "/edit")
    assert AuthActions(sam).signin("sam@school.test").status_code == 302
    assert {"user.deactivated", "user.activated"} <= set(actions(app))


def test_admin_cannot_deactivate_themselves(app, client, admin):
    url = f"/roster/users/{admin.id}"
    response = post_form(client, url + "/deactivate", {}, page=url + "/edit")
    assert response.status_code == 400
    assert "You cannot deactivate your own account." in response.get_data(as_text=True)
    assert user_by_email(app, admin.email).active


@pytest.mark.parametrize("url", ["/roster/users/999/edit", "/roster/classes/999"])
def test_unknown_ids_are_404(client, admin, url):
    assert client.get(url).status_code == 404


# Classes --------------------------------------------------------------------------


def test_admin_creates_a_class(app, client, admin, school):
    response = post_form(client, "/roster/classes", {"name": " 8A "})
    assert response.status_code == 302
    created = query(app, select(SchoolClass).where(SchoolClass.name == "8a"))[0][0]
    assert response.headers["Location"] == f"/roster/classes/{created.id}"
    assert "Created class 8a." in client.get(response.headers["Location"]).get_data(as_text=True)
    listing = client.get("/roster/classes").get_data(as_text=True)
    row_7b = listing[listing.index(f'id="class-{school.class_id}"') :]
    assert re.findall(r"<td>(\d+)</td>", row_7b[: row_7b.index("</tr>")]) == ["1", "0"]
    assert "class.created" in actions(app)


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("7B", 409, "A class named 7b already exists."),
        ("", 400, "Invalid class name"),
        ("<script>", 400, "Invalid class name"),
    ],
)
def test_class_name_errors(app, client, admin, school, name, status, message):
    before = count(app, SchoolClass)
    response = post_form(client, "/roster/classes", {"name": name}, page="/roster/classes")
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert count(app, SchoolClass) == before


def test_add_and_remove_students_and_teachers(app, client, admin, school):
    url = f"/roster/classes/{school.class_id}"
    response = post_form(client, url + "/members", {"email": " TOM@school.test "}, page=url)
    assert response.status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert "Added Tom Teacher to 7b as a teacher." in page
    teachers = page[page.index('id="teachers"') :]
    students = page[page.index('id="students"') : page.index('id="teachers"')]
    assert "Tom Teacher" in teachers and "Sam Student" in students and "Tom" not in students
    members = query(
        app,
        select(Membership.user_id, Membership.role).where(Membership.class_id == school.class_id),
    )
    assert sorted(members) == sorted(
        [(school.student.id, MemberRole.STUDENT), (school.teacher.id, MemberRole.TEACHER)]
    )

    response = post_form(client, f"{url}/members/{school.student.id}/remove", {}, page=url)
    assert response.status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert "Sam Student is no longer in 7b." in page
    assert "No students yet." in page
    assert {"class.member_added", "class.member_removed"} <= set(actions(app))


@pytest.mark.parametrize(
    ("email", "status", "message"),
    [
        ("sam@school.test", 409, "sam@school.test is already in 7b."),
        ("gina@school.test", 400, "only students and teachers join classes"),
        ("nobody@school.test", 404, "No user with email"),
        ("not an email", 400, "is not a valid email address"),
    ],
)
def test_adding_a_member_explains_what_is_wrong(app, client, admin, school, email, status, message):
    url = f"/roster/classes/{school.class_id}"
    before = roster_state(app)
    response = post_form(client, url + "/members", {"email": email}, page=url)
    html = response.get_data(as_text=True)
    assert response.status_code == status
    assert message in html and 'id="email-errors"' in html and f'value="{email}"' in html
    assert roster_state(app) == before


# Guardians ------------------------------------------------------------------------


def test_link_and_unlink_guardians(app, client, admin, school):
    url = f"/roster/users/{school.student.id}"
    page = client.get(url + "/edit").get_data(as_text=True)
    assert "Gina Guardian" in page[page.index('id="guardians"') :]
    response = post_form(
        client, url + "/guardians", {"guardian_email": "otto@school.test"}, page=url + "/edit"
    )
    assert response.status_code == 302
    page = client.get(url + "/edit").get_data(as_text=True)
    assert "Otto Other is now a guardian of Sam Student." in page
    assert f'id="guardian-{school.other_guardian.id}"' in page
    otto_page = client.get(f"/roster/users/{school.other_guardian.id}/edit").get_data(as_text=True)
    assert "Sam Student" in otto_page[otto_page.index('id="wards"') :]

    response = post_form(
        client, f"{url}/guardians/{school.guardian.id}/unlink", {}, page=url + "/edit"
    )
    assert response.status_code == 302
    page = client.get(url + "/edit").get_data(as_text=True)
    assert "Gina Guardian is no longer a guardian of Sam Student." in page
    links = query(
        app, select(Guardianship.guardian_id).where(Guardianship.student_id == school.student.id)
    )
    assert links == [(school.other_guardian.id,)]
    assert {"guardian.linked", "guardian.unlinked"} <= set(actions(app))


@pytest.mark.parametrize(
    ("email", "status", "message"),
    [
        ("gina@school.test", 409, "already a guardian of"),
        ("tom@school.test", 400, "tom@school.test is a teacher, not a guardian."),
        ("nobody@school.test", 404, "No user with email"),
    ],
)
def test_linking_a_guardian_explains_what_is_wrong(
    app, client, admin, school, email, status, message
):
    url = f"/roster/users/{school.student.id}"
    before = roster_state(app)
    response = post_form(client, url + "/guardians", {"guardian_email": email}, page=url + "/edit")
    html = response.get_data(as_text=True)
    assert response.status_code == status
    assert message in html and 'id="guardian_email-errors"' in html
    assert roster_state(app) == before


# Access and CSRF ------------------------------------------------------------------

PAGES = [
    "/roster/users",
    "/roster/users?q=sam",
    "/roster/users/new",
    "/roster/users/{student}/edit",
    "/roster/classes",
    "/roster/classes/{class_id}",
    "/roster/import",
]

POSTS = [
    ("/roster/users/new", {"email": "x@school.test", "name": "X", "role": "student"}),
    (
        "/roster/users/{student}/edit",
        {"email": "sam@school.test", "name": "Changed", "role": "student"},
    ),
    ("/roster/users/{student}/deactivate", {}),
    ("/roster/users/{student}/reactivate", {}),
    ("/roster/users/{student}/guardians", {"guardian_email": "otto@school.test"}),
    ("/roster/users/{student}/guardians/{guardian}/unlink", {}),
    ("/roster/classes", {"name": "9c"}),
    ("/roster/classes/{class_id}/members", {"email": "tom@school.test"}),
    ("/roster/classes/{class_id}/members/{student}/remove", {}),
    ("/roster/import", {"file": "email,name,role\nx@school.test,X,student\n"}),
]


def fill(url: str, school) -> str:
    return url.format(
        student=school.student.id, guardian=school.guardian.id, class_id=school.class_id
    )


def form_data(data: dict) -> dict:
    """Uploads are sent as files."""
    return {
        key: (io.BytesIO(value.encode()), "roster.csv") if key == "file" else value
        for key, value in data.items()
    }


@pytest.mark.parametrize("role", ["teacher", "student", "guardian"])
def test_only_admins_see_roster_pages(client, make_user, auth, school, role):
    auth.signin(make_user(role).email)
    for url in PAGES:
        response = client.get(fill(url, school))
        assert response.status_code == 403, url
        assert "Only administrators can manage the roster." in response.get_data(as_text=True)


@pytest.mark.parametrize(("url", "data"), POSTS)
@pytest.mark.parametrize("role", ["teacher", "student"])
def test_only_admins_change_the_roster(app, client, make_user, auth, school, role, url, data):
    auth.signin(make_user(role).email)
    before = roster_state(app)
    response = post_form(client, fill(url, school), form_data(data), page="/inbox")
    assert response.status_code == 403
    assert roster_state(app) == before


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_is_sent_to_signin(client, school, url):
    response = client.get(fill(url, school))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/signin?next=")


@pytest.mark.parametrize(("url", "data"), POSTS)
def test_posts_without_csrf_token_change_nothing(app, client, admin, school, url, data):
    before = roster_state(app)
    response = client.post(fill(url, school), data=form_data(data))
    assert response.status_code == 400
    assert 'data-error-code="csrf_failed"' in response.get_data(as_text=True)
    assert roster_state(app) == before


def test_every_roster_form_has_a_token_and_labelled_controls(client, admin, school):
    for url in PAGES:
        html = client.get(fill(url, school)).get_data(as_text=True)
        assert html.count('method="post"') == html.count('name="csrf_token"'), url
        for control_id in _labelled_control_ids(html):
            assert f'for="{control_id}"' in html, (url, control_id)


def _labelled_control_ids(html: str) -> list[str]:
    """Ids of the visible inputs and selects in `html` (each must have a <label>)."""

    class Controls(HTMLParser):
        def __init__(self):
            super().__init__()
            self.ids = []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag in ("input", "select", "textarea") and attrs.get("type") != "hidden":
                assert attrs.get("id"), f"unlabelled control {tag} {attrs}"
                self.ids.append(attrs["id"])

    parser = Controls()
    parser.feed(html)
    return parser.ids
