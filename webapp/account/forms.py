"""Settings forms (Flask-WTF: CSRF token included). Labels are marked for the catalogue
and translated where they are shown (account/settings.html)."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField

from ..i18n import N_
from ..roster.forms import language_choices


class ChannelsForm(FlaskForm):
    push = BooleanField(N_("Push notifications on my devices"))
    email = BooleanField(N_("E-mail when I have not seen an announcement"))


class LanguageForm(FlaskForm):
    # validate_choice=False: the users service says what is allowed.
    language = SelectField(N_("Language"), default="", validate_choice=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.language.choices = language_choices()
