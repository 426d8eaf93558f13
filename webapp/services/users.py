"""Users: accounts, passwords, sign-in, and the roster rules for people."""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import errors, passwords
from ..db import LIKE_ESCAPE, contains_pattern
from ..errors import Conflict, ValidationFailed
from ..models import Role, User
from . import audit

MIN_PASSWORD_LENGTH = 8
MAX_NAME_CHARS = 200
# Languages a person may choose (stored); Schoolbell itself speaks i18n.TRANSLATED, and
# shows the others in the school's default or the browser's language.
LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pl", "tr", "uk", "ar")


def end_read_transaction(session: Session) -> None:
    """Before waiting for a password hash (about 100 ms, while other greenlets run), end
    what this session has only read so far. On SQLite every transaction takes the write
    lock up front (BEGIN IMMEDIATE), and another greenlet's write would then wait for it
    in SQLite's busy handler, which sleeps in C and stalls the whole event loop."""
    if session.in_transaction() and not (session.new or session.dirty or session.deleted):
        session.commit()


def new_password_hash(session: Session, password: str, *, wait: bool = True) -> str:
    """Check a new password's strength and hash it (off the event loop; may raise Busy)."""
    check_password_strength(password)
    end_read_transaction(session)
    return passwords.hash(password, wait=wait)


def check_password_strength(password: str) -> None:
    """Refuse passwords too short to be safe."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise errors.WEAK_PASSWORD.error(min_length=MIN_PASSWORD_LENGTH)


def normalise_email(email: str) -> str:
    """Validate an address's syntax and return it in lower case."""
    try:
        # Schools use internal domains, so no DNS look-up and no "global" rule; the
        # reserved .test domain is allowed for demos and tests.
        checked = validate_email(
            (email or "").strip(),
            check_deliverability=False,
            globally_deliverable=False,
            test_environment=True,
        )
    except EmailNotValidError as exc:
        raise errors.INVALID_EMAIL.error(email=email, reason=exc) from None
    return checked.normalized.lower()


def parse_role(value: str) -> Role:
    """Turn 'teacher' (any case) into Role.TEACHER, or say which roles exist."""
    try:
        return Role((value or "").strip().lower())
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise errors.INVALID_ROLE.error(role=value, allowed=allowed) from None


def _clean_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise errors.NAME_REQUIRED.error()
    if len(name) > MAX_NAME_CHARS:
        raise errors.NAME_TOO_LONG.error(max=MAX_NAME_CHARS)
    return name


def _clean_language(language: str | None) -> str | None:
    """A language code we store, or None for empty: not chosen (the browser decides)."""
    language = (language or "").strip().lower()
    if not language:
        return None
    if language not in LANGUAGES:
        raise errors.INVALID_LANGUAGE.error(language=language, allowed=", ".join(LANGUAGES))
    return language


def require_admin(actor: User | None) -> None:
    """Only admins manage the roster."""
    if actor is None or actor.role is not Role.ADMIN:
        raise errors.ADMINS_ONLY.error()


def by_email(session: Session, email: str) -> User | None:
    """The user with this address (any case), or None."""
    email = (email or "").strip().lower()
    if "\x00" in email:  # no address has one, and PostgreSQL refuses it in a query (a 500)
        return None
    return session.scalar(select(User).where(User.email == email))


def get_by_email(session: Session, email: str) -> User:
    """The user with this address, or NotFound."""
    user = by_email(session, email)
    if user is None:
        raise errors.USER_NOT_FOUND.error(email=email)
    return user


def get(session: Session, user_id: int) -> User:
    """The user with this id, or NotFound."""
    user = session.get(User, user_id)
    if user is None:
        raise errors.USER_ID_NOT_FOUND.error(user_id=user_id)
    return user


def search(
    session: Session, query: str = "", role: Role | None = None, *, limit: int = 50, offset: int = 0
) -> tuple[list[User], int]:
    """Users whose name or email contains `query`, by name; and how many match in all."""
    stmt = select(User)
    if query.strip():
        like = contains_pattern(query.strip().lower())
        stmt = stmt.where(
            or_(
                func.lower(User.name).like(like, escape=LIKE_ESCAPE),
                User.email.like(like, escape=LIKE_ESCAPE),
            )
        )
    if role is not None:
        stmt = stmt.where(User.role == role)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(User.name, User.id).limit(limit).offset(offset))
    return list(rows), total


@dataclass
class UserInput:
    """The fields a roster editor may set; None means 'leave as it is' (a new person:
    none); an empty `language` means 'not chosen' (the browser's language decides)."""

    email: str
    name: str
    role: str
    password: str | None = None
    language: str | None = None


def build_user(session: Session, data: UserInput, password_hash: str | None = None) -> User:
    """Validate and add a new user to the session (no commit, no audit). A password in
    `data` is set from `password_hash`, made beforehand (`new_password_hash`): hashing
    yields to other greenlets, which must not happen inside a write transaction."""
    email = normalise_email(data.email)
    if by_email(session, email) is not None:
        raise errors.DUPLICATE_EMAIL.error(email=email)
    user = User(
        email=email,
        name=_clean_name(data.name),
        role=parse_role(data.role),
        language=_clean_language(data.language),
        active=True,
        session_epoch=0,
    )
    if data.password:
        user.password_hash = _required(password_hash)
    insert_unique(
        session,
        user,
        errors.DUPLICATE_EMAIL.error(email=email),
    )
    return user


def insert_unique(session: Session, row, duplicate: Conflict) -> None:
    """Insert `row` now; a unique constraint hit (someone else inserted the same name
    since we looked) becomes `duplicate`, and the rest of the transaction lives on."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise duplicate from None


def apply_changes(
    user: User, data: UserInput, session: Session, password_hash: str | None = None
) -> list[str]:
    """Update a user's fields from `data` (a new password from `password_hash`, made
    beforehand as for build_user); return the names of what changed."""
    changed = []
    email = normalise_email(data.email)
    if email != user.email:
        other = by_email(session, email)
        if other is not None and other.id != user.id:
            raise errors.DUPLICATE_EMAIL.error(email=email)
        user.email, changed = email, [*changed, "email"]
    name = _clean_name(data.name)
    if name != user.name:
        user.name, changed = name, [*changed, "name"]
    role = parse_role(data.role)
    if role is not user.role:
        user.role, changed = role, [*changed, "role"]
    if data.language is not None:
        language = _clean_language(data.language)
        if language != user.language:
            user.language, changed = language, [*changed, "language"]
    if data.password:
        user.password_hash = _required(password_hash)
        user.session_epoch += 1  # a new password signs every other session out
        changed.append("password")
    return changed


def create(
    session: Session, actor: User | None, data: UserInput, address: str | None = None
) -> User:
    """Create a user (admins only; `actor` None means the command line) and commit."""
    if actor is not None:
        require_admin(actor)
    password_hash = new_password_hash(session, data.password) if data.password else None
    user = build_user(session, data, password_hash)
    audit.record(
        session,
        "user.created",
        actor=actor,
        subject=f"user:{user.email}",
        address=address,
        role=user.role.value,
    )
    session.commit()
    return user


def update(
    session: Session, actor: User, user_id: int, data: UserInput, address: str | None = None
) -> User:
    """Edit a user (admins only) and commit."""
    require_admin(actor)
    user = get(session, user_id)
    if user.erased_at is not None:
        raise errors.ERASED_ACCOUNT.error()
    if user.id == actor.id and parse_role(data.role) is not Role.ADMIN:
        raise errors.SELF_DEMOTION.error()
    password_hash = new_password_hash(session, data.password) if data.password else None
    changed = apply_changes(user, data, session, password_hash)
    if changed:
        audit.record(
            session,
            "user.updated",
            actor=actor,
            subject=f"user:{user.email}",
            address=address,
            fields=changed,
        )
    session.commit()
    return user


def set_active(
    session: Session, actor: User, user_id: int, active: bool, address: str | None = None
) -> User:
    """Deactivate (ends every session of theirs) or reactivate a user, and commit."""
    require_admin(actor)
    user = get(session, user_id)
    if user.id == actor.id and not active:
        raise errors.SELF_DEACTIVATION.error()
    if user.erased_at is not None and active:
        raise errors.ERASED_ACCOUNT.error()
    if user.active != active:
        if active:
            user.active = True
            user.session_epoch += 1
        else:
            deactivate(user)
        audit.record(
            session,
            "user.activated" if active else "user.deactivated",
            actor=actor,
            subject=f"user:{user.email}",
            address=address,
        )
    session.commit()
    return user


def deactivate(user: User) -> None:
    """Take away a user's access (not committed): they cannot sign in, and every session
    of theirs ends. The caller tells realtime after the commit (live().user_disabled),
    which closes their open sockets in every process."""
    user.active = False
    user.session_epoch += 1


def set_channels(
    session: Session, user: User, push: bool, email: bool, address: str | None = None
) -> list[str]:
    """Choose how `user` is reached besides open tabs (pushes to their devices, e-mails
    when they have not seen an announcement), and commit; return what changed.
    Emergencies reach every channel whatever they choose."""
    changed = []
    if user.push_enabled != push:
        user.push_enabled, changed = push, [*changed, "push"]
    if user.email_enabled != email:
        user.email_enabled, changed = email, [*changed, "email"]
    if changed:
        audit.record(
            session,
            "user.channels_changed",
            actor=user,
            subject=f"user:{user.email}",
            address=address,
            push=push,
            email=email,
        )
    session.commit()
    return changed


def authenticate(session: Session, email: str, password: str, address: str | None) -> User:
    """Check a sign-in, record it in the audit trail, and return the user.

    A wrong email and a wrong password get the same message and take as long, so
    sign-in does not reveal which accounts exist.
    """
    with passwords.turn():  # in line before anything is read: see passwords.turn
        user = by_email(session, email)
        end_read_transaction(session)
        stored = user.password_hash if user and user.password_hash else passwords.DUMMY_HASH
        ok = passwords.verify(stored, password or "")
    if user is None or not user.password_hash or not ok or not user.active:
        reason = (
            "unknown_email"
            if user is None
            else "inactive"
            if ok and not user.active
            else "bad_password"
        )
        audit.record(
            session,
            "signin.failed",
            actor=user,
            subject=f"user:{(email or '').strip().lower()[:254]}",
            address=address,
            reason=reason,
        )
        session.commit()
        if reason == "inactive":  # only said to someone who knows the password
            raise errors.ACCOUNT_DISABLED.error()
        raise errors.SIGNIN_FAILED.error()
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    audit.record(
        session, "signin.succeeded", actor=user, subject=f"user:{user.email}", address=address
    )
    session.commit()
    return user


def first_admin(session: Session) -> User:
    """The oldest active administrator, or NotFound."""
    admin = session.scalar(
        select(User)
        .where(User.role == Role.ADMIN, User.active.is_(True))
        .order_by(User.id)
        .limit(1)
    )
    if admin is None:
        raise errors.NO_ADMIN.error()
    return admin


def set_language(
    session: Session, user: User, language: str | None, address: str | None = None
) -> None:
    """A person's own language choice (the settings page); empty or None: the browser's
    language decides. Audited, committed."""
    chosen = _clean_language(language)
    if chosen != user.language:
        user.language = chosen
        audit.record(
            session,
            "user.language_changed",
            actor=user,
            subject=f"user:{user.email}",
            address=address,
            language=chosen,
        )
    session.commit()


def input_errors(data: UserInput) -> list[str]:
    """Every rule `data` breaks, as messages for people; nothing is read or written."""
    checks = [
        (normalise_email, data.email),
        (_clean_name, data.name),
        (parse_role, data.role),
        (_clean_language, data.language),
    ]
    if data.password:
        checks.append((check_password_strength, data.password))
    messages = []
    for check, value in checks:
        try:
            check(value)
        except ValidationFailed as exc:
            messages.append(exc.message)
    return messages


def by_emails(session: Session, emails: list[str], chunk: int = 1000) -> dict[str, User]:
    """The users with these (normalised) addresses, by address; unknown ones are absent."""
    wanted = sorted(set(emails))
    found: dict[str, User] = {}
    # Chunked: database drivers limit how many parameters one statement may carry.
    for start in range(0, len(wanted), chunk):
        rows = session.scalars(select(User).where(User.email.in_(wanted[start : start + chunk])))
        found.update({user.email: user for user in rows})
    return found


def password_matches(user: User, password: str, *, wait: bool = True) -> bool:
    """True if `password` is this user's current password (so setting it again is no
    change). Verifies off the event loop: call it outside a write transaction."""
    return bool(user.password_hash) and passwords.verify(user.password_hash, password, wait=wait)


def _required(password_hash: str | None) -> str:
    if password_hash is None:  # a caller's mistake, never a user's
        raise ValueError("a new password needs its hash, made with new_password_hash()")
    return password_hash


def inactive_ids(session: Session) -> set[int]:
    """Every disabled account's id."""
    return set(session.scalars(select(User.id).where(User.active.is_(False))))
