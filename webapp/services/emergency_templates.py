"""Emergency templates: prepared texts for lockdown, evacuation, shelter in place, and
the all clear. Staff fill the compose form from them in one click (so nobody has to
find words while it matters); administrators adapt them to the school's own plan.

The defaults are created the first time the templates are needed (there is no seed
step to forget), and only those missing: an edited template is never overwritten.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

from flask import current_app, has_app_context
from flask_babel import force_locale, gettext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import errors
from ..i18n import N_
from ..markup import plain_text, render_markdown
from ..models import EmergencyTemplate, Role, User
from . import audit
from .notifications import clean_body, clean_title

MAX_NAME_CHARS = 100
ALL_CLEAR = "all_clear"


@dataclass(frozen=True)
class Default:
    """A template as Schoolbell ships it (English, marked for the catalogue: it is stored
    in the school's language the first time it is needed)."""

    key: str
    name: str
    title: str
    body: str
    all_clear: bool = False


DEFAULTS: tuple[Default, ...] = (
    Default(
        "lockdown",
        N_("Lockdown"),
        N_("Lockdown: stay inside, lock the doors"),
        N_(
            "**Stay calm. This is a lockdown.**\n\n"
            "- Stay where you are, or go into the nearest room that can be locked.\n"
            "- Lock or block the door, switch off the lights, keep away from windows and doors.\n"
            "- Stay quiet and silence your phone.\n"
            "- Do not open the door to anyone until staff or the police say it is safe.\n\n"
            "Tap **I'm safe** or **I need help** below so staff know where you are."
        ),
    ),
    Default(
        "evacuation",
        N_("Evacuation"),
        N_("Evacuation: leave the building now"),
        N_(
            "**Stay calm. Leave the building now.**\n\n"
            "- Leave by the nearest safe exit. Do not use the lifts.\n"
            "- Leave your belongings behind; help those who need it.\n"
            "- Go to your assembly point and stay with your class or group.\n"
            "- Do not go back inside until staff say it is safe.\n\n"
            "Tap **I'm safe** or **I need help** below so staff know you are out."
        ),
    ),
    Default(
        "shelter",
        N_("Shelter in place"),
        N_("Shelter in place: stay indoors"),
        N_(
            "**Stay calm. Stay indoors.**\n\n"
            "- Go inside the nearest building or room and stay there.\n"
            "- Close the windows and doors; keep away from them.\n"
            "- Follow the instructions of staff.\n"
            "- Stay inside until you get the all clear.\n\n"
            "Tap **I'm safe** or **I need help** below so staff know where you are."
        ),
    ),
    Default(
        ALL_CLEAR,
        N_("All clear"),
        N_("All clear"),
        N_(
            "The emergency is over and it is safe now. Please follow the instructions of "
            "staff. Thank you for your help."
        ),
        all_clear=True,
    ),
)


def ensure_defaults(session: Session) -> None:
    """Create the default templates that are missing, in the school's language, and
    commit (idempotent; an edited template is kept as it is). Two processes racing here
    both end with one set: the loser's insert fails on the unique key, and it reads the
    winner's rows instead."""
    present = set(session.scalars(select(EmergencyTemplate.key)))
    missing = [d for d in DEFAULTS if d.key not in present]
    if not missing:
        return
    school = (
        force_locale(current_app.config["DEFAULT_LANGUAGE"]) if has_app_context() else nullcontext()
    )
    with school:
        for position, default in enumerate(DEFAULTS):
            if default in missing:
                session.add(
                    EmergencyTemplate(
                        key=default.key,
                        name=gettext(default.name),
                        title=gettext(default.title),
                        body=gettext(default.body),
                        all_clear=default.all_clear,
                        position=position,
                    )
                )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()


def for_compose(session: Session) -> list[EmergencyTemplate]:
    """The emergencies a sender can start from, in order (not the all clear, which is no
    announcement of its own). Every sender may use them: the compose page checks who
    may send to whom."""
    ensure_defaults(session)
    return list(
        session.scalars(
            select(EmergencyTemplate)
            .where(EmergencyTemplate.all_clear.is_(False))
            .order_by(EmergencyTemplate.position, EmergencyTemplate.id)
        )
    )


def _require_admin(actor: User) -> None:
    if actor.role is not Role.ADMIN:
        raise errors.TEMPLATES_ADMINS_ONLY.error()


def editable(session: Session, actor: User) -> list[EmergencyTemplate]:
    """Every template, the all clear last, for an administrator to edit."""
    _require_admin(actor)
    ensure_defaults(session)
    return list(
        session.scalars(
            select(EmergencyTemplate).order_by(
                EmergencyTemplate.all_clear, EmergencyTemplate.position, EmergencyTemplate.id
            )
        )
    )


def get(session: Session, actor: User, key: str) -> EmergencyTemplate:
    """One template, for an administrator (404 for a key that does not exist)."""
    _require_admin(actor)
    ensure_defaults(session)
    template = session.scalar(select(EmergencyTemplate).where(EmergencyTemplate.key == key))
    if template is None:
        raise errors.TEMPLATE_NOT_FOUND.error(key=key[:40])
    return template


def clean_name(name: str) -> str:
    """A button label: one line, 1 to MAX_NAME_CHARS characters."""
    name = " ".join((name or "").split())
    if not name or len(name) > MAX_NAME_CHARS:
        raise errors.INVALID_TEMPLATE_NAME.error(max=MAX_NAME_CHARS)
    return name


def update(
    session: Session,
    actor: User,
    key: str,
    *,
    name: str,
    title: str,
    body: str,
    address: str | None = None,
) -> EmergencyTemplate:
    """Change a template's label, title and Markdown body (checked like an
    announcement's), audit it and commit."""
    template = get(session, actor, key)
    template.name = clean_name(name)
    template.title = clean_title(title)
    template.body = clean_body(body)
    template.updated_by_id = actor.id
    audit.record(
        session,
        "emergency_template.updated",
        actor=actor,
        subject=f"emergency_template:{template.key}",
        address=address,
    )
    session.commit()
    return template


def all_clear_text(session: Session) -> str:
    """The all-clear template's message as plain text (its Markdown rendered and
    sanitised, then its text taken): what an all clear says unless its sender wrote
    something else."""
    ensure_defaults(session)
    body = session.scalar(select(EmergencyTemplate.body).where(EmergencyTemplate.key == ALL_CLEAR))
    if body is None:  # deleted by hand from the database: the shipped wording
        body = next(d.body for d in DEFAULTS if d.key == ALL_CLEAR)
    return plain_text(render_markdown(body))
