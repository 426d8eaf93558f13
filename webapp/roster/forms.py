"""Roster forms (Flask-WTF: CSRF token included).

The forms check only what the services do not (a file was chosen, lengths that protect
the server); every roster rule, and its message, lives in the services. Labels are
marked for the catalogue (`N_`) and translated where they are shown (roster/_macros.html);
the choices are made per form, in the request's language.
"""

from flask_babel import gettext
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import Length

from ..i18n import N_, label, sentence
from ..models import Role
from ..services.users import LANGUAGES

# Each language in its own words: people look for their own.
LANGUAGE_NAMES = {
    "en": "English",
    "de": "Deutsch",
    "fr": "Français",
    "es": "Español",
    "it": "Italiano",
    "nl": "Nederlands",
    "pl": "Polski",
    "tr": "Türkçe",
    "uk": "Українська",
    "ar": "العربية",
}
BROWSER_DEFAULT = N_("Browser default")


def language_choices() -> list[SelectChoice]:
    """'Not chosen' (the browser's language decides) first, then every language."""
    return [SelectChoice("", gettext(BROWSER_DEFAULT))] + [
        SelectChoice(code, LANGUAGE_NAMES.get(code, code)) for code in LANGUAGES
    ]


def _text(value) -> str:
    """A stored language (None: not chosen) as the select's value."""
    return value or ""


class UserForm(FlaskForm):
    email = StringField(N_("Email"))
    name = StringField(N_("Name"))
    # validate_choice=False: an unknown value reaches the service, which says what is allowed.
    role = SelectField(N_("Role"), default=Role.STUDENT.value, validate_choice=False)
    language = SelectField(N_("Language"), default="", coerce=_text, validate_choice=False)
    password = PasswordField(N_("Password"), validators=[Length(max=1024)])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.role.choices = [SelectChoice(r.value, sentence(label(r, "role"))) for r in Role]
        self.language.choices = language_choices()


class ClassForm(FlaskForm):
    name = StringField(N_("Class name"))


class MemberForm(FlaskForm):
    email = StringField(N_("Email of a student or teacher"))


class GuardianForm(FlaskForm):
    # Its own field name: it shares the person's page with UserForm's "email".
    guardian_email = StringField(N_("Guardian's email"))


class ImportForm(FlaskForm):
    file = FileField(N_("CSV file"), validators=[FileRequired(N_("Choose a CSV file to import."))])


class EraseForm(FlaskForm):
    # Typed again by hand: erasing a person cannot be undone.
    confirm_email = StringField(
        N_("Type their e-mail address to confirm"), validators=[Length(max=254)]
    )
