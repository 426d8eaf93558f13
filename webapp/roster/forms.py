"""Roster forms (Flask-WTF: CSRF token included).

The forms check only what the services do not (a file was chosen, lengths that protect
the server); every roster rule, and its message, lives in the services.
"""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import Length

from ..models import Role
from ..services.users import LANGUAGES

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


class UserForm(FlaskForm):
    email = StringField("Email")
    name = StringField("Name")
    # validate_choice=False: an unknown value reaches the service, which says what is allowed.
    role = SelectField(
        "Role",
        default=Role.STUDENT.value,
        validate_choice=False,
        choices=[SelectChoice(role.value, role.value.title()) for role in Role],
    )
    language = SelectField(
        "Language",
        default="en",
        validate_choice=False,
        choices=[SelectChoice(code, LANGUAGE_NAMES.get(code, code)) for code in LANGUAGES],
    )
    password = PasswordField("Password", validators=[Length(max=1024)])


class ClassForm(FlaskForm):
    name = StringField("Class name")


class MemberForm(FlaskForm):
    email = StringField("Email of a student or teacher")


class GuardianForm(FlaskForm):
    # Its own field name: it shares the person's page with UserForm's "email".
    guardian_email = StringField("Guardian's email")


class ImportForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file to import.")])


class EraseForm(FlaskForm):
    # Typed again by hand: erasing a person cannot be undone.
    confirm_email = StringField(
        "Type their e-mail address to confirm", validators=[Length(max=254)]
    )
