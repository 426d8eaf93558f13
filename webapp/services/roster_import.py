"""CSV roster import: check every row first, then apply the whole file in one transaction.

An import only adds and updates (people, classes, memberships, guardianships); it never
removes anything, so importing the same file twice changes nothing the second time.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from flask_babel import gettext, ngettext
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .. import errors, i18n
from ..errors import DomainError, ValidationFailed
from ..i18n import N_
from ..models import Role, SchoolClass, User
from . import audit, classes, users

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("email", "name", "role")
OPTIONAL_COLUMNS = ("classes", "guardian_of", "password", "language")
# Each row costs a few queries, and on SQLite the import holds the write lock throughout
# (and must not yield to other greenlets while it does): 5,000 rows take about 8 s.
MAX_ROWS = 5_000
SEPARATOR = ";"  # between class names, and between student emails in guardian_of
NOT_UTF8 = N_("file is not UTF-8 encoded; save it as 'CSV UTF-8'")


@dataclass(frozen=True)
class RowError:
    """A problem on one line of the file (the header is line 1)."""

    line: int
    message: str


@dataclass
class ImportReport:
    """What an import did, or the errors that stopped it from doing anything."""

    source: str
    errors: list[RowError] = field(default_factory=list)
    users_created: int = 0
    users_updated: int = 0
    classes_created: int = 0
    memberships_added: int = 0
    guardianships_added: int = 0

    def counts(self) -> dict[str, int]:
        """The counters, for the audit trail."""
        return {
            name: value
            for name, value in dataclasses.asdict(self).items()
            if isinstance(value, int)
        }

    def describe(self) -> str:
        """One line for people, in the current language: 'Imported roster.csv: 12 users
        created, 3 updated, ...'."""
        if self.errors:
            n = len(self.errors)
            return ngettext(
                "Nothing was imported from %(source)s: %(num)d error.",
                "Nothing was imported from %(source)s: %(num)d errors.",
                n,
                source=self.source,
            )
        parts = {
            "users": ngettext("%(num)d user", "%(num)d users", self.users_created),
            "classes": ngettext("%(num)d class", "%(num)d classes", self.classes_created),
            "memberships": ngettext(
                "%(num)d membership", "%(num)d memberships", self.memberships_added
            ),
            "guardianships": ngettext(
                "%(num)d guardianship", "%(num)d guardianships", self.guardianships_added
            ),
        }
        return gettext(
            "Imported %(source)s: %(users)s created, %(updated)d updated, %(classes)s created,"
            " %(memberships)s, %(guardianships)s.",
            source=self.source,
            updated=self.users_updated,
            **parts,
        )


@dataclass
class _Row:
    """One person's line, cleaned; `problems` lists what is wrong with it."""

    line: int
    person: users.UserInput  # email normalised when valid
    role: Role | None
    classes: list[str]
    guardian_of: list[str]
    problems: list[str]


class _Refused(Exception):
    """The file as a whole cannot be read; one error says why."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


def import_csv(
    session: Session,
    actor: User | None,
    data: bytes,
    source: str = "upload",
    *,
    address: str | None = None,
) -> ImportReport:
    """Import a roster CSV (admins; `actor` None means the command line): all or nothing."""
    if actor is not None:
        users.require_admin(actor)
    source = source[:200]
    try:
        header, table = _read_table(data)
    except _Refused as exc:
        return ImportReport(source, errors=[RowError(exc.line, exc.message)])
    rows = [_parse_row(line, header, cells) for line, cells in table]
    _check_across_rows(session, actor, rows)
    errors = [RowError(row.line, problem) for row in rows for problem in row.problems]
    report = ImportReport(source, errors=errors)
    if not errors:
        failure = _apply(session, actor, rows, report, address)
        if failure is not None:
            report = ImportReport(source, errors=[failure])
    if report.errors:
        session.rollback()  # the checks above read in a transaction; nothing may stay
    return report


# Reading -----------------------------------------------------------------------------


def _read_table(data: bytes) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Decode and split the file: its column names, and each non-blank row with its line."""
    reader = csv.reader(io.StringIO(_decode(data), newline=""))
    header: list[str] | None = None
    header_line, last_line = 1, 0
    table: list[tuple[int, list[str]]] = []
    try:
        for cells in reader:
            # line_num is where a record ENDS (quoted cells may span lines); it starts
            # on the line after the previous record.
            line, last_line = last_line + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # blank lines and rows of empty cells, as spreadsheets write them
            if header is None:
                header, header_line = _check_header(cells, line), line
            elif len(table) == MAX_ROWS:
                raise _Refused(
                    line,
                    gettext(
                        "Too many rows: at most %(max)s people per file. "
                        "Split it into smaller files.",
                        max=f"{MAX_ROWS:,}",
                    ),
                )
            else:
                table.append((line, cells))
    except csv.Error as exc:
        raise _Refused(
            reader.line_num, gettext("This is not a readable CSV file: %(error)s.", error=exc)
        ) from None
    if header is None:
        raise _Refused(
            1,
            gettext("The file is empty: the first line must be a header such as email,name,role."),
        )
    if not table:
        raise _Refused(header_line, gettext("The file has a header but no rows of people."))
    return header, table


def _decode(data: bytes) -> str:
    """UTF-8 text, with or without the byte-order mark spreadsheets like to add."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Refused(data.count(b"\n", 0, exc.start) + 1, gettext(NOT_UTF8)) from None


def _check_header(cells: list[str], line: int) -> list[str]:
    """Column names in lower case, or one error naming every wrong or missing column."""
    names = [cell.strip().lower() for cell in cells]
    unknown = [name for name in names if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    repeated = sorted({name for name in names if names.count(name) > 1} - set(unknown))
    problems = [
        gettext(label, names=", ".join(repr(name) for name in found))
        for label, found in (
            (N_("unknown columns: %(names)s"), unknown),
            (N_("missing columns: %(names)s"), missing),
            (N_("repeated columns: %(names)s"), repeated),
        )
        if found
    ]
    if problems:
        raise _Refused(
            line,
            gettext(
                "Wrong header (%(problems)s). The columns are %(required)s (required) and"
                " %(optional)s (optional).",
                problems="; ".join(problems),
                required=", ".join(REQUIRED_COLUMNS),
                optional=", ".join(OPTIONAL_COLUMNS),
            ),
        )
    return names


# Checking ----------------------------------------------------------------------------


def _parse_row(line: int, header: list[str], cells: list[str]) -> _Row:
    """Clean one row with the same rules as the roster pages, noting every problem."""
    # Missing trailing cells are empty; extra ones are fine only when empty.
    if any(cell.strip() for cell in cells[len(header) :]):
        # The values are shifted, so any other message about them would mislead.
        return _Row(
            line,
            users.UserInput(email="", name="", role=""),
            None,
            [],
            [],
            [
                gettext(
                    "This line has %(values)d values but the header names %(columns)d "
                    "columns (a comma inside a value needs quotes).",
                    values=len(cells),
                    columns=len(header),
                )
            ],
        )
    values = {name: cell.strip() for name, cell in zip(header, cells, strict=False)}
    problems: list[str] = []
    person = users.UserInput(
        email=values.get("email", ""),
        name=values.get("name", ""),
        role=values.get("role", ""),
        password=values.get("password") or None,
        language=values.get("language") or None,
    )
    problems += users.input_errors(person)
    person.email = _clean(users.normalise_email, person.email) or person.email.lower()
    role = _clean(users.parse_role, person.role)
    class_names = _split(values.get("classes", ""), classes.normalise_class_name, problems)
    guardian_of = _split(values.get("guardian_of", ""), users.normalise_email, problems)
    if class_names and role is not None:
        try:  # a transient User, never added: member_role_for only looks at role and email
            classes.member_role_for(User(email=person.email, role=role))
        except ValidationFailed as exc:
            problems.append(exc.message)
    if guardian_of and role not in (None, Role.GUARDIAN):
        problems.append(
            gettext(
                "guardian_of is only for guardians; this row is a %(role)s.",
                role=i18n.label(role, "role"),
            )
        )
    return _Row(line, person, role, class_names, guardian_of, problems)


def _clean(rule: Callable[[str], object], value: str):
    """`rule(value)`, or None when the value breaks the rule."""
    try:
        return rule(value)
    except ValidationFailed:
        return None


def _split(cell: str, rule: Callable[[str], str], problems: list[str]) -> list[str]:
    """'a; b;;a' -> ['a', 'b'], each cleaned by `rule`; problems noted, bad items dropped."""
    items: dict[str, None] = {}
    for raw in cell.split(SEPARATOR):
        if not raw.strip():
            continue
        try:
            items[rule(raw)] = None
        except ValidationFailed as exc:
            problems.append(exc.message)
    return list(items)


def _check_across_rows(session: Session, actor: User | None, rows: list[_Row]) -> None:
    """Duplicate emails, students named in guardian_of, and the importer's own account."""
    first: dict[str, _Row] = {}
    for row in rows:
        if not row.person.email:
            continue  # already reported: an empty email is never a duplicate
        earlier = first.setdefault(row.person.email, row)
        if earlier is not row:
            row.problems.append(
                gettext(
                    "%(email)s already appears on line %(line)d.",
                    email=row.person.email,
                    line=earlier.line,
                )
            )
        if (
            actor is not None
            and row.person.email == actor.email
            and row.role not in (None, Role.ADMIN)
        ):
            row.problems.append(errors.SELF_DEMOTION.format())
    outside = users.by_emails(
        session, [email for row in rows for email in row.guardian_of if email not in first]
    )
    for row in rows:
        for email in row.guardian_of:
            problem = _not_a_student(email, first.get(email), outside.get(email))
            if problem:
                row.problems.append(problem)


def _not_a_student(email: str, in_file: _Row | None, existing: User | None) -> str | None:
    """Why `email` cannot be a ward (defined in this file, or already at school), if so."""
    if in_file is not None:
        if in_file.role in (None, Role.STUDENT):  # None: that row has its own error
            return None
        return gettext(
            "%(email)s is a %(role)s (line %(line)d), not a student.",
            email=email,
            role=i18n.label(in_file.role, "role"),
            line=in_file.line,
        )
    if existing is None:
        return gettext(
            "No student with email %(email)s in this file or in the school.", email=email
        )
    if existing.role is not Role.STUDENT:
        return gettext(
            "%(email)s is a %(role)s, not a student.",
            email=email,
            role=i18n.label(existing.role, "role"),
        )
    return None


# Applying ----------------------------------------------------------------------------


def _apply(
    session: Session,
    actor: User | None,
    rows: list[_Row],
    report: ImportReport,
    address: str | None,
) -> RowError | None:
    """Write every row and commit, counting into `report`; or the error that stopped it."""
    existing = users.by_emails(session, [row.person.email for row in rows])
    hashes = _password_hashes(session, rows, existing)
    saved: dict[str, User] = {}
    known: dict[str, SchoolClass] = {}
    line = 1
    try:
        for row in rows:
            line = row.line
            user = saved[row.person.email] = _save_user(
                session, row.person, existing.get(row.person.email), hashes.get(row.line), report
            )
            for name in row.classes:
                school_class = _class_named(session, name, known, report)
                report.memberships_added += classes.ensure_member(session, school_class, user)
        # Only once everyone exists: a guardian may come before their students.
        for row in rows:
            line = row.line
            for email in row.guardian_of:
                student = saved.get(email) or users.get_by_email(session, email)
                report.guardianships_added += classes.ensure_guardianship(
                    session, saved[row.person.email], student
                )
        line = 1
        audit.record(
            session,
            "roster.imported",
            actor=actor,
            subject=f"import:{report.source}",
            address=address,
            source=report.source,
            **report.counts(),
        )
        session.commit()
    except DomainError as exc:
        return RowError(line, exc.message)
    except SQLAlchemyError:
        log.exception("roster import of %s failed at line %d", report.source, line)
        return RowError(
            line,
            gettext(
                "The database refused this change (was the roster edited at "
                "the same time?). Nothing was imported; try again."
            ),
        )
    return None


def _password_hashes(
    session: Session, rows: list[_Row], existing: dict[str, User]
) -> dict[int, str | None]:
    """Line -> the hash of the password it sets, made before anything is written:
    hashing runs on the password threads and yields, which must never happen while the
    import holds the database's write lock. None: the same password as now, no change
    (so it does not sign them out everywhere). An import waits its turn for the threads
    without the sign-in queue's deadline."""
    users.end_read_transaction(session)
    hashes: dict[int, str | None] = {}
    for row in rows:
        password, user = row.person.password, existing.get(row.person.email)
        if not password:
            continue
        if user is not None and users.password_matches(user, password, wait=False):
            hashes[row.line] = None
        else:
            hashes[row.line] = users.new_password_hash(session, password, wait=False)
    return hashes


def _save_user(
    session: Session,
    person: users.UserInput,
    user: User | None,
    password_hash: str | None,
    report: ImportReport,
) -> User:
    """Create the user, or update the one with this email; counted in `report`."""
    if user is None:
        report.users_created += 1
        return users.build_user(session, person, password_hash)
    if person.password and password_hash is None:  # the same password as now
        person = dataclasses.replace(person, password=None)
    if users.apply_changes(user, person, session, password_hash):
        report.users_updated += 1
    return user


def _class_named(
    session: Session, name: str, known: dict[str, SchoolClass], report: ImportReport
) -> SchoolClass:
    """The class called `name`, created (and counted) if it does not exist yet."""
    if name not in known:
        school_class = classes.by_name(session, name)
        if school_class is None:
            school_class = classes.build_class(session, name)
            report.classes_created += 1
        known[name] = school_class
    return known[name]
