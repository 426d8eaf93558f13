"""Audiences: who may reach whom, and who exactly receives, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from webapp.db import get_session
from webapp.errors import Forbidden, NotFound, ValidationFailed
from webapp.models import Role, TargetKind, User
from webapp.services import classes
from webapp.services.audience import AudienceSpec, ClassTarget, parse_class_target, resolve

from . import school as school_module
from .conftest import make_test_app
from .databases import sqlite_copy
from .school import build_school

PARTS = ("students", "guardians", "teachers")
STUDENTS = {"7a": ["s7a_1", "s7a_2", "s7a_3"], "7b": ["s7b_1", "s7b_2", "s7b_3"]}
GUARDIANS = {"7a": ["g7a_1", "g7a_2", "g7a_3"], "7b": ["g7b_1", "g7b_2", "g7b_3"]}
TEACHERS = {"7a": ["t7a"], "7b": ["t7b"]}
MEMBERS = {"students": STUDENTS, "guardians": GUARDIANS, "teachers": TEACHERS}
ACTIVE = ["admin", *(h for group in MEMBERS.values() for c in group.values() for h in c)]


def fast_school(app, monkeypatch):
    """build_school without password hashes (nobody signs in here): 3x faster."""
    monkeypatch.setattr(school_module, "SIGN_IN_HANDLES", frozenset())
    return build_school(app)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def school_app(request, sqlite_template, tmp_path_factory):
    """Like `any_database_url` + build_school, once per module and backend: resolve()
    only reads, so the read-only tests share one school (keeps the suite fast)."""
    directory = tmp_path_factory.mktemp("audience")
    if request.param == "sqlite":
        url = sqlite_copy(sqlite_template, directory)
    else:
        url = request.getfixturevalue("postgres").create()
    app = make_test_app(url, directory)
    with pytest.MonkeyPatch.context() as monkeypatch:
        school = fast_school(app, monkeypatch)
    yield app, school
    app.extensions["schoolbell.db"].kw["bind"].dispose()


@pytest.fixture
def school(school_app):
    return school_app[1]


@pytest.fixture
def session(school_app):
    """A session on the shared school; anything a test changes is rolled back."""
    app = school_app[0]
    with app.app_context():
        session = get_session()
        yield session
        session.rollback()


def user(session, school, handle: str) -> User:
    return session.get(User, school.ids[handle])


def ids(school, handles) -> set[int]:
    return {school.ids[h] for h in handles}


def members(class_name: str, parts) -> list[str]:
    return [h for part in PARTS if part in parts for h in MEMBERS[part][class_name]]


def to_class(name: str, *parts: str) -> AudienceSpec:
    return AudienceSpec(classes=(ClassTarget(name, frozenset(parts or ("students",))),))


def to_people(school, *handles: str) -> AudienceSpec:
    return AudienceSpec(users=tuple(school.emails[h] for h in handles))


def refused(error_type, session, actor, spec):
    with pytest.raises(error_type) as caught:
        resolve(session, actor, spec)
    return caught.value


CLASS_PARTS = [(p,) for p in PARTS] + [
    ("students", "guardians"),
    ("students", "teachers"),
    ("guardians", "teachers"),
    PARTS,
]


# Administrators -------------------------------------------------------------------------


def test_admin_reaches_everyone_active(session, school):
    resolved = resolve(session, user(session, school, "admin"), AudienceSpec(everyone=True))
    assert resolved.user_ids == ids(school, ACTIVE)
    assert resolved.count == 15
    assert resolved.breakdown == [("everyone", 15)]
    assert [t.kind for t in resolved.targets] == [TargetKind.EVERYONE]


@pytest.mark.parametrize(
    ("role", "handles"),
    [
        (Role.STUDENT, STUDENTS["7a"] + STUDENTS["7b"]),
        (Role.GUARDIAN, GUARDIANS["7a"] + GUARDIANS["7b"]),
        (Role.TEACHER, ["t7a", "t7b"]),
        (Role.ADMIN, ["admin"]),
    ],
)
def test_admin_reaches_a_whole_role(session, school, role, handles):
    resolved = resolve(session, user(session, school, "admin"), AudienceSpec(roles=(role,)))
    assert resolved.user_ids == ids(school, handles)
    assert resolved.breakdown == [(f"all {role.value}s", len(handles))]
    [target] = resolved.targets
    assert (target.kind, target.role) == (TargetKind.ROLE, role)


def test_admin_reaches_several_roles_at_once(session, school):
    spec = AudienceSpec(roles=(Role.TEACHER, Role.GUARDIAN))
    resolved = resolve(session, user(session, school, "admin"), spec)
    assert resolved.user_ids == ids(school, ["t7a", "t7b", *GUARDIANS["7a"], *GUARDIANS["7b"]])
    assert resolved.breakdown == [("all teachers", 2), ("all guardians", 6)]


@pytest.mark.parametrize("class_name", ["7a", "7b"])
@pytest.mark.parametrize("parts", CLASS_PARTS, ids="+".join)
def test_admin_reaches_any_class(session, school, class_name, parts):
    resolved = resolve(session, user(session, school, "admin"), to_class(class_name, *parts))
    assert resolved.user_ids == ids(school, members(class_name, parts))
    assert resolved.breakdown == [
        (f"{part} in {class_name}", len(MEMBERS[part][class_name]))
        for part in PARTS
        if part in parts
    ]
    [target] = resolved.targets
    assert target.kind is TargetKind.CLASS
    assert target.audience == [p for p in PARTS if p in parts]  # fixed order


@pytest.mark.parametrize("handle", ["s7a_1", "g7b_3", "t7a", "t7b", "admin"])
def test_admin_reaches_any_single_user(session, school, handle):
    resolved = resolve(session, user(session, school, "admin"), to_people(school, handle))
    assert resolved.user_ids == {school.ids[handle]}
    assert resolved.breakdown == [("people chosen one by one", 1)]
    [target] = resolved.targets
    assert (target.kind, target.user_id) == (TargetKind.USER, school.ids[handle])


def test_every_kind_of_target_at_once_counts_each_person_once(session, school):
    spec = AudienceSpec(
        users=(school.emails["s7a_1"], school.emails["g7b_2"]),
        classes=(ClassTarget("7b", frozenset(PARTS)),),
        roles=(Role.TEACHER,),
        everyone=True,
    )
    resolved = resolve(session, user(session, school, "admin"), spec)
    assert resolved.count == 15
    assert resolved.breakdown == [
        ("everyone", 15),
        ("all teachers", 2),
        ("students in 7b", 3),
        ("guardians in 7b", 3),
        ("teachers in 7b", 1),
        ("people chosen one by one", 2),
    ]
    assert [t.kind for t in resolved.targets] == [
        TargetKind.EVERYONE,
        TargetKind.ROLE,
        TargetKind.CLASS,
        TargetKind.USER,
        TargetKind.USER,
    ]


# Teachers -------------------------------------------------------------------------------


@pytest.mark.parametrize("parts", CLASS_PARTS, ids="+".join)
def test_teacher_reaches_their_own_class(session, school, parts):
    resolved = resolve(session, user(session, school, "t7b"), to_class("7b", *parts))
    assert resolved.user_ids == ids(school, members("7b", parts))
    assert resolved.count == len(members("7b", parts))


def test_teacher_class_breakdown_is_labelled_per_part(session, school):
    resolved = resolve(session, user(session, school, "t7b"), to_class("7b", *PARTS))
    assert resolved.breakdown == [
        ("students in 7b", 3),
        ("guardians in 7b", 3),
        ("teachers in 7b", 1),
    ]
    assert resolved.count == 7


@pytest.mark.parametrize("name", ["7B", " 7b ", "7b"])
def test_class_names_are_matched_without_case_or_spaces(session, school, name):
    resolved = resolve(session, user(session, school, "t7b"), to_class(name))
    assert resolved.breakdown == [("students in 7b", 3)]


@pytest.mark.parametrize("handle", ["s7b_1", "s7b_3", "g7b_2", "t7b"])
def test_teacher_reaches_people_of_their_own_class(session, school, handle):
    resolved = resolve(session, user(session, school, "t7b"), to_people(school, handle))
    assert resolved.user_ids == {school.ids[handle]}


def test_teacher_reaches_several_people_of_their_class_and_themselves(session, school):
    handles = ["s7b_1", "g7b_1", "g7b_3", "t7b"]
    resolved = resolve(session, user(session, school, "t7b"), to_people(school, *handles))
    assert resolved.user_ids == ids(school, handles)
    assert resolved.breakdown == [("people chosen one by one", 4)]


def test_teacher_reaches_a_colleague_who_teaches_their_class(session, school):
    classes.ensure_member(session, classes.get_by_name(session, "7b"), user(session, school, "t7a"))
    session.flush()
    teacher = user(session, school, "t7b")
    assert resolve(session, teacher, to_people(school, "t7a")).user_ids == {school.ids["t7a"]}
    assert resolve(session, teacher, to_class("7b", "teachers")).user_ids == ids(
        school, ["t7a", "t7b"]
    )


def test_teacher_of_two_classes_reaches_both(session, school):
    classes.ensure_member(session, classes.get_by_name(session, "7a"), user(session, school, "t7b"))
    session.flush()
    spec = AudienceSpec(
        classes=(
            ClassTarget("7a", frozenset(["guardians"])),
            ClassTarget("7b", frozenset(["students"])),
        ),
        users=(school.emails["s7a_2"],),
    )
    resolved = resolve(session, user(session, school, "t7b"), spec)
    assert resolved.user_ids == ids(school, GUARDIANS["7a"] + STUDENTS["7b"] + ["s7a_2"])
    assert resolved.breakdown == [
        ("guardians in 7a", 3),
        ("students in 7b", 3),
        ("people chosen one by one", 1),
    ]


@pytest.mark.parametrize("parts", [("students",), ("teachers",), PARTS], ids="+".join)
def test_teacher_cannot_reach_another_class(session, school, parts):
    error = refused(Forbidden, session, user(session, school, "t7b"), to_class("7a", *parts))
    assert error.code == "audience_forbidden"
    assert error.status == 403
    assert "7a" in error.message


def test_teacher_cannot_reach_another_class_alongside_their_own(session, school):
    spec = AudienceSpec(
        classes=(
            ClassTarget("7b", frozenset(["students"])),
            ClassTarget("7a", frozenset(["students"])),
        )
    )
    assert (
        refused(Forbidden, session, user(session, school, "t7b"), spec).code == "audience_forbidden"
    )


@pytest.mark.parametrize("handle", ["s7a_1", "g7a_2", "t7a", "admin"])
def test_teacher_cannot_reach_people_outside_their_classes(session, school, handle):
    error = refused(Forbidden, session, user(session, school, "t7b"), to_people(school, handle))
    assert error.code == "audience_forbidden"
    assert school.emails[handle] in error.message


def test_one_outsider_spoils_a_list_of_people(session, school):
    error = refused(
        Forbidden,
        session,
        user(session, school, "t7b"),
        to_people(school, "s7b_1", "g7b_1", "s7a_3"),
    )
    assert error.code == "audience_forbidden"
    assert school.emails["s7a_3"] in error.message
    assert school.emails["s7b_1"] not in error.message


@pytest.mark.parametrize(
    "spec",
    [
        AudienceSpec(everyone=True),
        AudienceSpec(roles=(Role.STUDENT,)),
        AudienceSpec(roles=(Role.TEACHER,)),
        AudienceSpec(roles=(Role.GUARDIAN,), classes=(ClassTarget("7b", frozenset(["students"])),)),
    ],
    ids=["everyone", "students", "teachers", "role-and-own-class"],
)
def test_teacher_cannot_reach_roles_or_everyone(session, school, spec):
    error = refused(Forbidden, session, user(session, school, "t7b"), spec)
    assert error.code == "audience_forbidden"


def test_a_teacher_without_classes_reaches_nobody_but_themselves(session, school):
    teacher = User(email="new.teacher@school.test", name="New", role=Role.TEACHER)
    session.add(teacher)
    session.flush()
    assert refused(Forbidden, session, teacher, to_class("7b")).code == "audience_forbidden"
    assert (
        refused(Forbidden, session, teacher, to_people(school, "s7b_1")).code
        == "audience_forbidden"
    )
    own = resolve(session, teacher, AudienceSpec(users=("new.teacher@school.test",)))
    assert own.user_ids == {teacher.id}


# Students and guardians never send ---------------------------------------------------------


@pytest.mark.parametrize("handle", ["s7b_1", "g7b_1", "s7a_2", "g7a_3"])
@pytest.mark.parametrize(
    "spec",
    [AudienceSpec(everyone=True), to_class("7b"), AudienceSpec()],
    ids=["everyone", "own-class", "empty"],
)
def test_students_and_guardians_are_not_senders(session, school, handle, spec):
    error = refused(Forbidden, session, user(session, school, handle), spec)
    assert error.code == "not_a_sender"
    assert error.status == 403


def test_a_student_cannot_even_message_themselves(session, school):
    error = refused(Forbidden, session, user(session, school, "s7b_1"), to_people(school, "s7b_1"))
    assert error.code == "not_a_sender"


# Unknown and empty targets --------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["admin", "t7b"])
@pytest.mark.parametrize("name", ["8c", "7", "7bb"])
def test_unknown_class_is_not_found(session, school, actor, name):
    error = refused(NotFound, session, user(session, school, actor), to_class(name))
    assert error.code == "class_not_found"
    assert error.status == 404
    assert name in error.message


@pytest.mark.parametrize("actor", ["admin", "t7b"])
def test_unknown_email_is_not_found_and_named(session, school, actor):
    spec = AudienceSpec(users=(school.emails["s7b_1"], "nobody@school.test", "ghost@school.test"))
    error = refused(NotFound, session, user(session, school, actor), spec)
    assert error.code == "user_not_found"
    assert "ghost@school.test, nobody@school.test" in error.message
    assert school.emails["s7b_1"] not in error.message


def test_emails_are_matched_without_case_or_spaces(session, school):
    spec = AudienceSpec(users=("  S7B_1@School.TEST ", "s7b_1@school.test", "G7B_2@SCHOOL.test"))
    resolved = resolve(session, user(session, school, "t7b"), spec)
    assert resolved.user_ids == ids(school, ["s7b_1", "g7b_2"])
    assert resolved.breakdown == [("people chosen one by one", 2)]
    assert len(resolved.targets) == 2


@pytest.mark.parametrize("actor", ["admin", "t7b"])
def test_an_empty_audience_is_refused(session, school, actor):
    error = refused(ValidationFailed, session, user(session, school, actor), AudienceSpec())
    assert error.code == "empty_audience"
    assert error.status == 400


@pytest.mark.parametrize(
    ("audience", "parts"),
    [
        (None, {"students"}),
        (["guardians"], {"guardians"}),
        (("students", "teachers"), {"students", "teachers"}),
        (["students", "students"], {"students"}),
    ],
)
def test_class_target_audience_defaults_to_students(audience, parts):
    assert parse_class_target("7b", audience) == ClassTarget("7b", frozenset(parts))


@pytest.mark.parametrize(
    "audience", [[], "students", ["parents"], ["students", "admins"], 3, [{}], [["students"]]]
)
def test_class_target_audience_must_be_known_parts(audience):
    with pytest.raises(ValidationFailed) as caught:
        parse_class_target("7b", audience)
    assert caught.value.code == "invalid_audience"


# Who is counted -------------------------------------------------------------------------------


def test_deactivated_users_are_never_recipients(any_database_url, tmp_path, monkeypatch):
    """Deactivations committed on a fresh database of each backend."""
    app = make_test_app(any_database_url, tmp_path)
    school = fast_school(app, monkeypatch)
    try:
        with app.app_context():
            session = get_session()
            for handle in ("s7b_2", "g7b_1", "t7b"):
                user(session, school, handle).active = False
            session.commit()
            admin = user(session, school, "admin")
            everyone = resolve(session, admin, AudienceSpec(everyone=True))
            assert everyone.count == 12
            assert not everyone.user_ids & ids(school, ["gone", "s7b_2", "g7b_1", "t7b"])
            whole_class = resolve(session, admin, to_class("7b", *PARTS))
            # The guardian of a deactivated student still hears about their class.
            assert whole_class.user_ids == ids(school, ["s7b_1", "s7b_3", "g7b_2", "g7b_3"])
            assert whole_class.breakdown == [
                ("students in 7b", 2),
                ("guardians in 7b", 2),
                ("teachers in 7b", 0),
            ]
            students = resolve(session, admin, AudienceSpec(roles=(Role.STUDENT,)))
            assert students.breakdown == [("all students", 5)]
            chosen = resolve(session, admin, to_people(school, "s7b_2", "g7b_2"))
            assert chosen.user_ids == {school.ids["g7b_2"]}
    finally:
        app.extensions["schoolbell.db"].kw["bind"].dispose()


def test_a_deactivated_user_chosen_by_name_receives_nothing(session, school):
    resolved = resolve(session, user(session, school, "admin"), to_people(school, "gone", "s7a_1"))
    assert resolved.user_ids == {school.ids["s7a_1"]}
    assert resolved.breakdown == [("people chosen one by one", 1)]
    assert {t.user_id for t in resolved.targets} == ids(school, ["gone", "s7a_1"])


def test_only_deactivated_people_resolve_to_nobody(session, school):
    resolved = resolve(session, user(session, school, "admin"), to_people(school, "gone"))
    assert resolved.count == 0
    assert resolved.breakdown == [("people chosen one by one", 0)]


def test_someone_reached_twice_counts_once(session, school):
    spec = AudienceSpec(
        users=(school.emails["s7b_1"], school.emails["g7b_1"]),
        classes=(ClassTarget("7b", frozenset(["students"])),),
    )
    resolved = resolve(session, user(session, school, "t7b"), spec)
    assert resolved.count == 4
    assert resolved.breakdown == [("students in 7b", 3), ("people chosen one by one", 2)]


def test_a_guardian_of_two_students_counts_once(session, school):
    classes.ensure_guardianship(
        session, user(session, school, "g7b_1"), user(session, school, "s7b_2")
    )
    classes.ensure_guardianship(
        session, user(session, school, "g7b_1"), user(session, school, "s7a_1")
    )
    session.flush()
    admin = user(session, school, "admin")
    assert resolve(session, admin, to_class("7b", "guardians")).breakdown == [
        ("guardians in 7b", 3)
    ]
    both = AudienceSpec(
        classes=(
            ClassTarget("7a", frozenset(["guardians"])),
            ClassTarget("7b", frozenset(["guardians"])),
        )
    )
    resolved = resolve(session, admin, both)
    assert resolved.breakdown == [("guardians in 7a", 4), ("guardians in 7b", 3)]
    assert resolved.count == 6


def test_a_student_in_two_classes_counts_once(session, school):
    classes.ensure_member(
        session, classes.get_by_name(session, "7a"), user(session, school, "s7b_1")
    )
    session.flush()
    spec = AudienceSpec(
        classes=(ClassTarget("7a", frozenset(PARTS)), ClassTarget("7b", frozenset(PARTS)))
    )
    resolved = resolve(session, user(session, school, "admin"), spec)
    assert resolved.breakdown == [
        ("students in 7a", 4),
        ("guardians in 7a", 4),
        ("teachers in 7a", 1),
        ("students in 7b", 3),
        ("guardians in 7b", 3),
        ("teachers in 7b", 1),
    ]
    assert resolved.count == 14


def test_resolving_writes_nothing(session, school):
    before = session.scalar(select(User.id).order_by(User.id.desc()).limit(1))
    resolve(session, user(session, school, "admin"), AudienceSpec(everyone=True))
    assert not session.new and not session.dirty
    assert session.scalar(select(User.id).order_by(User.id.desc()).limit(1)) == before


def test_a_teacher_choosing_a_deactivated_pupil_of_their_class_is_not_refused(session, school):
    """As for admins, a deactivated person chosen by name simply receives nothing; the
    teacher is not told that a pupil of their own class is "not in your classes"."""
    user(session, school, "s7b_2").active = False
    session.flush()
    resolved = resolve(session, user(session, school, "t7b"), to_people(school, "s7b_1", "s7b_2"))
    assert resolved.user_ids == {school.ids["s7b_1"]}
    assert resolved.breakdown == [("people chosen one by one", 1)]
