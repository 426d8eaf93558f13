"""Roster pages for administrators: people, classes, guardians and the CSV import.

Each view parses its form, calls one service, then redirects with a message or renders
the page again with the service's message under the field it concerns.
"""

from __future__ import annotations

from math import ceil

from flask import flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user, login_required
from flask_wtf import FlaskForm

from .. import errors, i18n
from ..db import get_session
from ..errors import DomainError, ErrorCode
from ..extensions import client_address
from ..models import Role, SchoolClass
from ..realtime.live import live
from ..services import classes, privacy, roster_import, users
from . import bp
from .forms import ClassForm, EraseForm, GuardianForm, ImportForm, MemberForm, UserForm

PEOPLE_PER_PAGE = 25
# The field that shows a service error, by the error's code (else the form's first).
FIELD_FOR_CODE: dict[ErrorCode, str] = {
    errors.INVALID_EMAIL: "email",
    errors.DUPLICATE_EMAIL: "email",
    errors.USER_NOT_FOUND: "email",
    errors.NAME_REQUIRED: "name",
    errors.NAME_TOO_LONG: "name",
    errors.INVALID_CLASS_NAME: "name",
    errors.DUPLICATE_CLASS: "name",
    errors.INVALID_ROLE: "role",
    errors.SELF_DEMOTION: "role",
    errors.INVALID_LANGUAGE: "language",
    errors.WEAK_PASSWORD: "password",
    errors.ERASURE_NOT_CONFIRMED: "confirm_email",
}


@bp.before_request
@login_required
def _admins_only():
    """Every roster page is for administrators."""
    users.require_admin(current_user)


def _show_error(form: FlaskForm, exc: DomainError) -> int:
    """Put a service's message under its field; return the HTTP status to answer with."""
    get_session().rollback()  # a failed service call may leave half-made changes behind
    name = FIELD_FOR_CODE.get(exc.kind)  # any wording of the code
    field = form[name] if name in form else next(f for f in form if f.name != "csrf_token")
    field.errors = [*field.errors, exc.message]
    return exc.status


def _failed_action(exc: DomainError) -> int:
    """A button's action failed: say why at the top of the page; return the status."""
    get_session().rollback()
    flash(exc.message, "error")
    return exc.status


def _status(form: FlaskForm) -> int:
    """200 for a fresh form, 400 for a submitted one that did not validate."""
    return 400 if form.is_submitted() else 200


# People -------------------------------------------------------------------------------


@bp.get("/users", endpoint="users")
def user_list():
    """People, searched by name or email and filtered by role, a page at a time."""
    query = request.args.get("q", "").strip()[:100]
    role = request.args.get("role", "").strip()
    page = max(request.args.get("page", 1, type=int), 1)
    people, total = classes.search_with_classes(
        get_session(),
        query,
        users.parse_role(role) if role else None,
        limit=PEOPLE_PER_PAGE,
        offset=(page - 1) * PEOPLE_PER_PAGE,
    )
    template = "roster/_user_rows.html" if _htmx_partial() else "roster/users.html"
    response = make_response(
        render_template(
            template,
            people=people,
            total=total,
            q=query,
            role=role,
            roles=list(Role),
            page=page,
            pages=ceil(total / PEOPLE_PER_PAGE),
        )
    )
    response.vary.add("HX-Request")  # the same URL answers a page or a partial
    return response


def _htmx_partial() -> bool:
    """htmx asked for the results alone; restoring history needs the whole page."""
    return request.headers.get("HX-Request") == "true" and not request.headers.get(
        "HX-History-Restore-Request"
    )


def _user_input(form: UserForm) -> users.UserInput:
    """The form's fields as the users service takes them (empty password: keep it;
    language "": not chosen, the browser decides; no language field sent: keep it)."""
    return users.UserInput(
        email=form.email.data or "",
        name=form.name.data or "",
        role=form.role.data or "",
        password=form.password.data or None,
        language=(form.language.data or "") if form.language.raw_data else None,
    )


@bp.route("/users/new", methods=["GET", "POST"])
def new_user():
    """Add a person, then go to their page (for classes and guardians)."""
    form = UserForm()
    if not form.validate_on_submit():
        return render_template("roster/user_new.html", form=form), _status(form)
    try:
        user = users.create(get_session(), current_user, _user_input(form), client_address())
    except DomainError as exc:
        status = _show_error(form, exc)
        return render_template("roster/user_new.html", form=form), status
    flash(gettext("Added %(name)s (%(email)s).", name=user.name, email=user.email), "success")
    return redirect(url_for(".edit_user", user_id=user.id))


def _person_page(
    person: classes.Person,
    form: UserForm | None = None,
    guardian_form: GuardianForm | None = None,
    status: int = 200,
    erase_form: EraseForm | None = None,
):
    """A person's page; each form not given starts fresh from the database."""
    form = form or UserForm(formdata=None, obj=person.user)
    guardian_form = guardian_form or GuardianForm(formdata=None)
    erase_form = erase_form or EraseForm(formdata=None)
    return render_template(
        "roster/user_edit.html",
        person=person,
        form=form,
        guardian_form=guardian_form,
        erase_form=erase_form,
    ), status


@bp.route("/users/<int:user_id>/edit", methods=["GET", "POST"])
def edit_user(user_id: int):
    """A person's details, classes and guardians; POST saves the details."""
    person = classes.person(get_session(), user_id)
    form = UserForm(obj=person.user)
    if not form.validate_on_submit():
        return _person_page(person, form, status=_status(form))
    try:
        user = users.update(
            get_session(), current_user, user_id, _user_input(form), client_address()
        )
    except DomainError as exc:
        return _person_page(person, form, status=_show_error(form, exc))
    flash(gettext("Saved %(name)s.", name=user.name), "success")
    return redirect(url_for(".edit_user", user_id=user_id))


@bp.post("/users/<int:user_id>/deactivate")
def deactivate_user(user_id: int):
    """Deactivate a person: every session of theirs ends, and they cannot sign in."""
    return _set_active(user_id, active=False)


@bp.post("/users/<int:user_id>/reactivate")
def reactivate_user(user_id: int):
    """Let a deactivated person sign in again."""
    return _set_active(user_id, active=True)


def _set_active(user_id: int, active: bool):
    """Deactivate or reactivate, then back to the person's page."""
    person = classes.person(get_session(), user_id)
    try:
        user = users.set_active(get_session(), current_user, user_id, active, client_address())
    except DomainError as exc:
        return _person_page(person, status=_failed_action(exc))
    if not active:
        live().user_disabled(user.id)  # their open tabs close now, in every process
    flash(
        gettext("%(name)s can sign in again.", name=user.name)
        if active
        else gettext("%(name)s is deactivated and signed out everywhere.", name=user.name),
        "success",
    )
    return redirect(url_for(".edit_user", user_id=user_id))


@bp.get("/users/<int:user_id>/export")
def export_user(user_id: int):
    """Everything Schoolbell holds about a person, as a JSON download."""
    data = privacy.export(get_session(), current_user, user_id, client_address())
    response = make_response(privacy.export_json(data))
    response.headers["Content-Type"] = "application/json; charset=utf-8"
    response.headers["Content-Disposition"] = (
        f'attachment; filename="schoolbell-person-{user_id}.json"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/users/<int:user_id>/erase")
def erase_user(user_id: int):
    """Erase a person for good, once their e-mail is typed again to confirm."""
    person = classes.person(get_session(), user_id)
    form = EraseForm()
    if not form.validate_on_submit():
        return _person_page(person, erase_form=form, status=400)
    try:
        privacy.check_confirmation(person.user, form.confirm_email.data or "")
        erased = privacy.erase(get_session(), current_user, user_id, client_address())
    except DomainError as exc:
        return _person_page(person, erase_form=form, status=_show_error(form, exc))
    live().user_disabled(erased.user_id)  # their open tabs close now, in every process
    flash(gettext("The person was erased: their name and e-mail are gone everywhere."), "success")
    return redirect(url_for(".edit_user", user_id=user_id))


@bp.post("/users/<int:user_id>/guardians")
def link_guardian(user_id: int):
    """Link a guardian, found by email, to this student."""
    person = classes.person(get_session(), user_id)
    form = GuardianForm()
    if not form.validate_on_submit():
        return _person_page(person, guardian_form=form, status=400)
    try:
        guardian = classes.link_guardian_by_email(
            get_session(), current_user, user_id, form.guardian_email.data or "", client_address()
        )
    except DomainError as exc:
        return _person_page(person, guardian_form=form, status=_show_error(form, exc))
    flash(
        gettext(
            "%(guardian)s is now a guardian of %(student)s.",
            guardian=guardian.name,
            student=person.user.name,
        ),
        "success",
    )
    return redirect(url_for(".edit_user", user_id=user_id, _anchor="guardians"))


@bp.post("/users/<int:student_id>/guardians/<int:guardian_id>/unlink")
def unlink_guardian(student_id: int, guardian_id: int):
    """Remove a guardian from a student."""
    person = classes.person(get_session(), student_id)
    guardian = next((g.name for g in person.guardians if g.id == guardian_id), "The guardian")
    try:
        classes.unlink_guardian(
            get_session(), current_user, guardian_id, student_id, client_address()
        )
    except DomainError as exc:
        return _person_page(person, status=_failed_action(exc))
    flash(
        gettext(
            "%(guardian)s is no longer a guardian of %(student)s.",
            guardian=guardian,
            student=person.user.name,
        ),
        "success",
    )
    return redirect(url_for(".edit_user", user_id=student_id, _anchor="guardians"))


# Classes ------------------------------------------------------------------------------


def _classes_page(form: ClassForm, status: int = 200):
    """The class list with the new-class form."""
    rows = classes.list_with_counts(get_session())
    return render_template("roster/classes.html", rows=rows, form=form), status


@bp.get("/classes", endpoint="classes")
def class_list():
    """Every class with its number of students and teachers, and a form for a new one."""
    return _classes_page(ClassForm())


@bp.post("/classes")
def create_class():
    """Create a class, then go to its page to add members."""
    form = ClassForm()
    if not form.validate_on_submit():
        return _classes_page(form, 400)
    try:
        school_class = classes.create(
            get_session(), current_user, form.name.data or "", client_address()
        )
    except DomainError as exc:
        return _classes_page(form, _show_error(form, exc))
    flash(gettext("Created class %(name)s.", name=school_class.name), "success")
    return redirect(url_for(".class_detail", class_id=school_class.id))


def _class_page(school_class: SchoolClass, form: MemberForm | None = None, status: int = 200):
    """A class's page with the add-member form."""
    form = form or MemberForm(formdata=None)
    return render_template("roster/class_detail.html", school_class=school_class, form=form), status


@bp.get("/classes/<int:class_id>")
def class_detail(class_id: int):
    """A class's students and teachers."""
    return _class_page(classes.get(get_session(), class_id))


@bp.post("/classes/<int:class_id>/members")
def add_member(class_id: int):
    """Add a student or teacher, found by email; their role decides how they join."""
    school_class = classes.get(get_session(), class_id)
    form = MemberForm()
    if not form.validate_on_submit():
        return _class_page(school_class, form, 400)
    try:
        membership = classes.add_member_by_email(
            get_session(), current_user, class_id, form.email.data or "", client_address()
        )
    except DomainError as exc:
        return _class_page(school_class, form, _show_error(form, exc))
    flash(
        gettext(
            "Added %(name)s to %(class_name)s as a %(role)s.",
            name=membership.user.name,
            class_name=school_class.name,
            role=i18n.label(membership.role, "role"),
        ),
        "success",
    )
    return redirect(url_for(".class_detail", class_id=class_id))


@bp.post("/classes/<int:class_id>/members/<int:user_id>/remove")
def remove_member(class_id: int, user_id: int):
    """Take someone out of a class."""
    school_class = classes.get(get_session(), class_id)
    member = next(
        (m.user.name for m in school_class.memberships if m.user_id == user_id), "That person"
    )
    try:
        classes.remove_member(get_session(), current_user, class_id, user_id, client_address())
    except DomainError as exc:
        return _class_page(school_class, status=_failed_action(exc))
    flash(
        gettext(
            "%(name)s is no longer in %(class_name)s.", name=member, class_name=school_class.name
        ),
        "success",
    )
    return redirect(url_for(".class_detail", class_id=class_id))


# Import -------------------------------------------------------------------------------


@bp.route("/import", methods=["GET", "POST"], endpoint="import_roster")
def import_page():
    """Upload a roster CSV: all of it is imported, or nothing and every problem is listed."""
    form = ImportForm()
    if not form.validate_on_submit():
        return render_template("roster/import.html", form=form, report=None), _status(form)
    upload = form.file.data
    report = roster_import.import_csv(
        get_session(),
        current_user,
        upload.read(),
        source=upload.filename or "upload",
        address=client_address(),
    )
    if report.errors:
        return render_template("roster/import.html", form=form, report=report), 400
    flash(report.describe(), "success")
    return redirect(url_for(".import_roster"))
