"""A demo school for trying Schoolbell: `flask seed-demo` (and `make run`) load it.

One administrator, 8 teachers, six classes of 25 students, and 200 guardians (a third of
the students have two). Names come from a fixed random seed, so every demo is the same.
The passwords are public; never load the demo into a real school's database.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from . import errors, passwords
from .models import Guardianship, MemberRole, Membership, Role, SchoolClass, User
from .services import audit

SEED = 20250901
DOMAIN = "school.test"
FAMILY_DOMAIN = "home.test"
CLASS_NAMES = ("5a", "5b", "6a", "6b", "7a", "7b")
STUDENTS_PER_CLASS = 25
TWO_GUARDIANS = 50  # students with two guardians: 150 + 50 = 200 guardians
PASSWORDS = {
    Role.ADMIN: "admin-demo-pass",
    Role.TEACHER: "teacher-demo-pass",
    Role.STUDENT: "student-demo-pass",
    Role.GUARDIAN: "guardian-demo-pass",
}
ADMIN = ("Alex Morgan", f"admin@{DOMAIN}")
# (name, classes): a class teacher for each class, and two who teach across a year.
TEACHERS = (
    ("Helena Brandt", ("5a",)),
    ("Tomasz Nowak", ("5b",)),
    ("Grace Adeyemi", ("6a",)),
    ("Luis Ortega", ("6b",)),
    ("Ingrid Larsen", ("7a",)),
    ("Samuel Whitaker", ("7b",)),
    ("Aiko Tanaka", ("5a", "6a", "7a")),
    ("Omar Haddad", ("5b", "6b", "7b")),
)
CHILD_NAMES = (
    "Mia",
    "Noah",
    "Aylin",
    "Mehmet",
    "Sofia",
    "Luca",
    "Amara",
    "Kenji",
    "Zofia",
    "Elias",
    "Priya",
    "Finn",
    "Leila",
    "Mateo",
    "Hannah",
    "Yusuf",
    "Chloe",
    "Ivan",
    "Nora",
    "Arjun",
    "Emma",
    "Oskar",
    "Fatima",
    "Leon",
    "Ines",
    "Kofi",
    "Ella",
    "Milan",
    "Sara",
    "Theo",
    "Jana",
    "Adam",
    "Lina",
    "Ravi",
    "Clara",
    "Jonas",
    "Maya",
    "Emil",
    "Alina",
    "Samir",
    "Lea",
    "Felix",
    "Nia",
    "Hugo",
    "Olga",
    "Tariq",
    "Ida",
    "Max",
    "Rosa",
    "Daniel",
)
ADULT_NAMES = (
    "Anna",
    "Michael",
    "Ayse",
    "Thomas",
    "Maria",
    "Ahmed",
    "Julia",
    "Peter",
    "Olena",
    "David",
    "Sabine",
    "Marco",
    "Nadia",
    "Stefan",
    "Grace",
    "Karim",
    "Monika",
    "Paul",
    "Leyla",
    "Jan",
    "Claire",
    "Andrei",
    "Susanne",
    "Carlos",
    "Aisha",
    "Robert",
    "Beata",
    "Hassan",
    "Laura",
    "Martin",
    "Irina",
    "Emeka",
    "Katrin",
    "Jorge",
    "Mei",
    "Frank",
    "Dana",
    "Tobias",
    "Rania",
)
SURNAMES = (
    "Schmidt",
    "Novak",
    "Yilmaz",
    "Rossi",
    "Kowalski",
    "Okafor",
    "Silva",
    "Meyer",
    "Haddad",
    "Jensen",
    "Fischer",
    "Popescu",
    "Garcia",
    "Nguyen",
    "Weber",
    "Demir",
    "Moreau",
    "Bauer",
    "Kovac",
    "Mensah",
    "Wagner",
    "Petrov",
    "Lopez",
    "Schulz",
    "Ivanova",
    "Becker",
    "Sato",
    "Hoffmann",
    "Khan",
    "Costa",
    "Lehmann",
    "Horvat",
    "Richter",
    "Dubois",
    "Kaya",
    "Brown",
    "Keller",
    "Santos",
    "Wolf",
    "Berg",
    "Shevchenko",
    "Ali",
    "Vogel",
    "Martin",
    "Novotna",
)
# Most families read English; the rest get announcements in their own language.
FAMILY_LANGUAGES = ("en",) * 14 + ("de", "de", "tr", "pl", "ar", "uk", "es", "fr")


@dataclass
class Plan:
    """Rows to insert, as plain dicts keyed by email and class name."""

    users: list[dict] = field(default_factory=list)
    memberships: list[tuple[str, str, MemberRole]] = field(default_factory=list)
    guardianships: list[tuple[str, str]] = field(default_factory=list)
    taken: set[str] = field(default_factory=set)

    def person(
        self,
        name: str,
        role: Role,
        domain: str = DOMAIN,
        language: str = "en",
        email: str | None = None,
    ) -> str:
        """Add a user (by default with a unique first.last email); return the email."""
        base = ".".join(name.lower().split())
        email, n = email or f"{base}@{domain}", 1
        while email in self.taken:
            n += 1
            email = f"{base}{n}@{domain}"
        self.taken.add(email)
        self.users.append({"email": email, "name": name, "role": role, "language": language})
        return email


@dataclass(frozen=True)
class DemoSummary:
    """What seed() loaded, and example sign-ins to try."""

    counts: dict[str, int]
    examples: list[tuple[str, str, str]]  # (who, email, password)

    def describe(self) -> str:
        """The text `flask seed-demo` prints."""
        c = self.counts
        lines = [
            f"Demo school loaded: {c['admins']} administrator, {c['teachers']} teachers, "
            f"{c['classes']} classes ({', '.join(CLASS_NAMES)}), {c['students']} students, "
            f"{c['guardians']} guardians.",
            "Sign in at /signin, for example as:",
            *(f"  {who:<26} {email:<36} {password}" for who, email, password in self.examples),
            "Every user of a role shares that role's password. These passwords are public:",
            "never load the demo into a real school's database.",
        ]
        return "\n".join(lines)


def is_empty(session: Session) -> bool:
    """True when the database has no users at all."""
    return session.scalar(select(User.id).limit(1)) is None


def plan(rng: random.Random) -> Plan:
    """Decide every person, membership and guardianship of the demo school."""
    school = Plan()
    school.person(ADMIN[0], Role.ADMIN, email=ADMIN[1])
    for name, class_names in TEACHERS:
        email = school.person(name, Role.TEACHER)
        school.memberships += [(name_, email, MemberRole.TEACHER) for name_ in class_names]
    students = []
    for class_name in CLASS_NAMES:
        for _ in range(STUDENTS_PER_CLASS):
            surname = rng.choice(SURNAMES)
            email = school.person(f"{rng.choice(CHILD_NAMES)} {surname}", Role.STUDENT)
            school.memberships.append((class_name, email, MemberRole.STUDENT))
            students.append((email, surname))
    _add_guardians(school, students, rng)
    return school


def _add_guardians(school: Plan, students: list[tuple[str, str]], rng: random.Random) -> None:
    """One guardian per student, two for some; a second guardian may have another surname."""
    pairs = set(rng.sample(range(len(students)), TWO_GUARDIANS))
    for index, (student, surname) in enumerate(students):
        surnames = [surname, surname if rng.random() < 0.6 else rng.choice(SURNAMES)]
        for family_name in surnames[: 2 if index in pairs else 1]:
            guardian = school.person(
                f"{rng.choice(ADULT_NAMES)} {family_name}",
                Role.GUARDIAN,
                FAMILY_DOMAIN,
                rng.choice(FAMILY_LANGUAGES),
            )
            school.guardianships.append((guardian, student))


def loaded_summary(session: Session) -> DemoSummary | None:
    """The demo's sign-ins, if this database holds the demo school (its admin exists)."""
    admin = session.scalar(select(User.id).where(User.email == ADMIN[1]))
    return _summary(plan(random.Random(SEED))) if admin is not None else None


def seed(session: Session) -> DemoSummary:
    """Load the demo school into an empty database, in one transaction."""
    if not is_empty(session):
        raise errors.NOT_EMPTY.error()
    school = plan(random.Random(SEED))
    try:
        _insert(session, school)
        summary = _summary(school)
        audit.record(session, "demo.seeded", subject="demo", **summary.counts)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return summary


def _insert(session: Session, school: Plan) -> None:
    """Bulk-insert the plan's rows (Core executemany, not one ORM object per row)."""
    # Argon2 costs ~50 ms a hash, so each public demo password is hashed once and every
    # user of that role shares the hash: acceptable only because the passwords are public.
    hashes = {role: passwords.hash(pw, wait=False) for role, pw in PASSWORDS.items()}
    session.execute(
        insert(User),
        [
            {**row, "password_hash": hashes[row["role"]], "active": True, "session_epoch": 0}
            for row in school.users
        ],
    )
    session.execute(insert(SchoolClass), [{"name": name} for name in CLASS_NAMES])
    user_ids = dict(session.execute(select(User.email, User.id)).all())
    class_ids = dict(session.execute(select(SchoolClass.name, SchoolClass.id)).all())
    session.execute(
        insert(Membership),
        [
            {"class_id": class_ids[name], "user_id": user_ids[email], "role": role}
            for name, email, role in school.memberships
        ],
    )
    session.execute(
        insert(Guardianship),
        [
            {"guardian_id": user_ids[guardian], "student_id": user_ids[student]}
            for guardian, student in school.guardianships
        ],
    )


def _summary(school: Plan) -> DemoSummary:
    """Counts per role, and one person of each role to sign in as (7b where it applies)."""
    by_role = {role: [u["email"] for u in school.users if u["role"] is role] for role in Role}
    teacher = next(e for c, e, r in school.memberships if c == "7b" and r is MemberRole.TEACHER)
    student = next(e for c, e, r in school.memberships if c == "7b" and r is MemberRole.STUDENT)
    guardian = next(g for g, s in school.guardianships if s == student)
    student_name = next(u["name"] for u in school.users if u["email"] == student)
    counts = {
        "admins": len(by_role[Role.ADMIN]),
        "teachers": len(by_role[Role.TEACHER]),
        "classes": len(CLASS_NAMES),
        "students": len(by_role[Role.STUDENT]),
        "guardians": len(by_role[Role.GUARDIAN]),
    }
    examples = [
        ("administrator", by_role[Role.ADMIN][0], PASSWORDS[Role.ADMIN]),
        ("teacher of 7b", teacher, PASSWORDS[Role.TEACHER]),
        ("student in 7b", student, PASSWORDS[Role.STUDENT]),
        (f"guardian of {student_name}", guardian, PASSWORDS[Role.GUARDIAN]),
    ]
    return DemoSummary(counts, examples)
