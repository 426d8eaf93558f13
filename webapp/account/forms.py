"""Settings forms (Flask-WTF: CSRF token included)."""

from flask_wtf import FlaskForm
from wtforms import BooleanField


class ChannelsForm(FlaskForm):
    push = BooleanField("Push notifications on my devices")
    email = BooleanField("E-mail when I have not seen an announcement")
