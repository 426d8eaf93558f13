"""The compose form: what the page posts, parsed into the service's Draft."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from werkzeug.datastructures import MultiDict

from .. import errors
from ..db import utcnow
from ..i18n import N_
from ..models import Priority, Role
from ..services import audience
from ..services.edits import Edit
from ..services.notifications import Draft

CLASS_FIELD = "class:"
# Reminders a sender picks on the compose page, relative to the confirmation deadline.
REMINDER_CHOICES = {
    "day": N_("Remind one day before"),
    "evening": N_("Remind the evening before (18:00)"),
    "hour": N_("Remind one hour before"),
}
EVENING = time(18, 0)  # "class:7b" -> the chosen parts of 7b (students, guardians, ...)


@dataclass
class ComposeInput:
    """The compose form's fields as posted (strings), kept to show the draft again."""

    title: str = ""
    body: str = ""
    priority: str = Priority.NORMAL.value
    require_ack: bool = False
    expires_at: str = ""  # <input type=datetime-local>, in the school's time zone
    send_at: str = ""  # the same; empty: now
    confirm_by: str = ""  # the same; empty: no deadline
    reminders: list[str] = field(default_factory=list)  # REMINDER_CHOICES keys
    drill: bool = False  # "This is a drill" (offered for emergencies only)
    users: list[str] = field(default_factory=list)
    classes: dict[str, list[str]] = field(default_factory=dict)
    roles: list[str] = field(default_factory=list)
    everyone: bool = False
    confirmed: bool = False
    key: str = field(default_factory=lambda: uuid.uuid4().hex)  # one send per page

    @classmethod
    def from_form(cls, form: MultiDict) -> ComposeInput:
        """Read the posted fields; unknown ones are ignored, nothing is trusted yet."""
        return cls(
            title=form.get("title", ""),
            body=form.get("body", ""),
            priority=form.get("priority", Priority.NORMAL.value),
            require_ack=form.get("require_ack") == "1",
            expires_at=form.get("expires_at", "").strip(),
            send_at=form.get("send_at", "").strip(),
            confirm_by=form.get("confirm_by", "").strip(),
            reminders=[r for r in form.getlist("remind") if r in REMINDER_CHOICES],
            drill=form.get("drill") == "1",
            users=list(dict.fromkeys(e.strip().lower() for e in form.getlist("user") if e.strip())),
            classes={
                name.removeprefix(CLASS_FIELD): form.getlist(name)
                for name in form
                if name.startswith(CLASS_FIELD) and form.getlist(name)
            },
            roles=form.getlist("role"),
            everyone=form.get("everyone") == "1",
            confirmed=form.get("confirmed") == "1",
            key=form.get("key") or uuid.uuid4().hex,
        )

    def audience_spec(self) -> audience.AudienceSpec:
        roles = []
        for value in self.roles:
            try:
                roles.append(Role(value))
            except ValueError:
                allowed = ", ".join(r.value for r in Role)
                raise errors.INVALID_ROLE.error(role=value, allowed=allowed) from None
        return audience.AudienceSpec(
            users=tuple(self.users),
            classes=tuple(
                audience.parse_class_target(name, parts) for name, parts in self.classes.items()
            ),
            roles=tuple(roles),
            everyone=self.everyone,
        )

    def draft(self, timezone: str) -> Draft:
        """The service's Draft (times read in the school's time zone)."""
        confirm_by = local_time(self.confirm_by, timezone, errors.CONFIRM_BY_NOT_A_TIME)
        send_at = local_time(self.send_at, timezone, errors.SEND_AT_NOT_A_TIME)
        return Draft(
            title=self.title,
            body=self.body,
            priority=self.priority,
            require_ack=self.require_ack,
            expires_at=self.expiry(timezone),
            audience=self.audience_spec(),
            send_at=send_at,
            confirm_by=confirm_by,
            remind_at=reminder_times(self.reminders, confirm_by, send_at, timezone),
            drill=self.is_drill,
        )

    @property
    def is_drill(self) -> bool:
        """A drill is an emergency exercise: the box, hidden for other priorities, may
        still be ticked from before the priority changed, and then means nothing."""
        return self.drill and self.priority == Priority.EMERGENCY.value

    def expiry(self, timezone: str) -> datetime | None:
        return local_time(self.expires_at, timezone, errors.EXPIRY_NOT_A_TIME)


def reminder_times(
    choices: list[str], confirm_by: datetime | None, send_at: datetime | None, timezone: str
) -> tuple[datetime, ...]:
    """The chosen reminders as times; those that would come before the send (or now)
    are left out, as there is nobody to remind yet."""
    if confirm_by is None:
        return ()
    local = confirm_by.astimezone(ZoneInfo(timezone))
    at = {
        "day": confirm_by - timedelta(days=1),
        "hour": confirm_by - timedelta(hours=1),
        "evening": datetime.combine(
            local.date() - timedelta(days=1), EVENING, tzinfo=ZoneInfo(timezone)
        ),
    }
    earliest = max(send_at or utcnow(), utcnow())
    return tuple(sorted(at[c] for c in dict.fromkeys(choices) if earliest < at[c] < confirm_by))


def local_time(value: str, timezone: str, invalid: errors.ErrorCode) -> datetime | None:
    """A <input type=datetime-local> value, read in the school's time zone (None when
    empty)."""
    if not value:
        return None
    try:
        local = datetime.fromisoformat(value)
    except ValueError:
        raise invalid.error() from None
    return local.replace(tzinfo=ZoneInfo(timezone)) if local.tzinfo is None else local


@dataclass
class EditInput:
    """The edit form's fields as posted (strings), kept to show the form again."""

    title: str = ""
    body: str = ""
    priority: str = Priority.NORMAL.value
    link: str = ""
    expires_at: str = ""  # datetime-local in the school's time zone; empty: never
    send_at: str = ""  # scheduled only
    reconfirm: bool = False

    @classmethod
    def from_form(cls, form: MultiDict) -> EditInput:
        return cls(
            title=form.get("title", ""),
            body=form.get("body", ""),
            priority=form.get("priority", Priority.NORMAL.value),
            link=form.get("link", "").strip(),
            expires_at=form.get("expires_at", "").strip(),
            send_at=form.get("send_at", "").strip(),
            reconfirm=form.get("reconfirm") == "1",
        )

    @classmethod
    def of(cls, notification, timezone: str) -> EditInput:
        """The form filled with an announcement as it is."""
        return cls(
            title=notification.title,
            body=notification.body,
            priority=notification.priority.value,
            link=notification.link or "",
            expires_at=local_input(notification.expires_at, timezone),
            send_at=local_input(notification.send_at, timezone),
        )

    def edit(self, timezone: str, scheduled: bool) -> Edit:
        """The service's Edit: every field of the form (the service keeps what is
        unchanged); the send time only for a scheduled announcement."""
        change = Edit(
            title=self.title,
            body=self.body,
            priority=self.priority,
            link=self.link or None,
            expires_at=local_time(self.expires_at, timezone, errors.EXPIRY_NOT_A_TIME),
            reconfirm=self.reconfirm,
        )
        if scheduled and self.send_at:
            change.send_at = local_time(self.send_at, timezone, errors.SEND_AT_NOT_A_TIME)
        return change


def local_input(moment: datetime | None, timezone: str) -> str:
    """A UTC time as a datetime-local value in the school's time zone ("" for None)."""
    if moment is None:
        return ""
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%dT%H:%M")
