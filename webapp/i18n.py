"""Languages: which one each page, socket, e-mail and push speaks; times in the school's
zone and the language's format; the browser client's strings.

Schoolbell speaks English (the source language: every msgid is the English text) and
German (webapp/translations/de/LC_MESSAGES/messages.po; `make translations` extracts new
strings into it, `make` compiles it). Who gets which:
- a request: the signed-in person's own choice (`users.language`) when it is one we
  translate, else the best match of the browser's Accept-Language, else the school's
  default (SCHOOLBELL_DEFAULT_LANGUAGE);
- a socket: the same rule, with the handshake's Accept-Language (`choose`);
- work without a request (the job queue's e-mails and pushes): the recipient's choice,
  else the school's default (`for_recipient`, with flask_babel.force_locale).

Strings defined at import time (the error catalogue, form labels, constants) are marked
with `N_` and translated where they are shown, in the locale of that moment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from pathlib import Path

from babel.messages.extract import extract_from_file
from flask import Flask, current_app, g, has_app_context, has_request_context, request
from flask_babel import Babel, force_locale, format_datetime, get_locale, gettext
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

log = logging.getLogger(__name__)

SOURCE_LANGUAGE = "en"
TRANSLATED = ("en", "de")  # the languages Schoolbell speaks (a .po each, besides English)
ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
# The browser scripts whose strings the server hands over (babel.cfg extracts the same
# files): `_("...")` translates, `N_("...")` only marks a string translated later.
CLIENT_SCRIPTS = ("static/js/schoolbell.js", "static/js/dashboard.js", "static/js/push.js")
# Dates and times as people read them, per language (Babel patterns, in the school's zone).
DATETIME_FORMATS = {"en": "dd MMM yyyy, HH:mm zzz", "de": "dd.MM.yyyy, HH:mm zzz"}
DATE_FORMATS = {"en": "dd MMM yyyy", "de": "dd.MM.yyyy"}
CLOCK_FORMAT = "HH:mm:ss"

babel = Babel()


def N_(message: str) -> str:
    """Mark a string for the catalogue without translating it now: it is translated where
    it is shown (`gettext(constant)`), in the locale of that moment."""
    return message


class Phrase(str):
    """English text made from a marked message and its values, for logs and the audit
    trail, that can also say itself in the current language (`translated`): what a
    service composes for people to read later (an audience's breakdown, say)."""

    message: str
    values: dict

    def __new__(cls, message: str, /, **values: object) -> Phrase:
        english = {k: str(v) for k, v in values.items()}
        self = super().__new__(cls, message % english if values else message)
        self.message, self.values = message, values
        return self

    def translated(self) -> str:
        """The phrase in the current language (its Phrase values too)."""
        values = {k: translated(v) if isinstance(v, Phrase) else v for k, v in self.values.items()}
        return gettext(self.message, **values)


def translated(text: str) -> str:
    """`text` (an English msgid marked with N_, or a Phrase) in the current language;
    as it is where no Schoolbell app is running (a bare Flask app in a unit test)."""
    if isinstance(text, Phrase):
        return text.translated()
    if not text or (has_app_context() and "babel" not in current_app.extensions):
        return text
    return gettext(text)


def init_app(app: Flask) -> None:
    """Flask-Babel with Schoolbell's locale rule and the school's time zone; Jinja's
    i18n extension (`_`, `{% trans %}`, whitespace trimmed as babel.cfg extracts it)."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", app.config["DEFAULT_LANGUAGE"])
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", app.config["TIMEZONE"])
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    babel.init_app(app, locale_selector=request_locale)
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    app.jinja_env.filters.update(
        local_time=local_time,
        local_date=local_date,
        clock=clock,
        label=label,
        sentence=sentence,
        person_name=person_name,
    )
    # `translated(text)`: a string marked elsewhere (N_: form labels, validators), looked up
    # now and autoescaped like any value. Never `_(variable)` in a template: Jinja's `_`
    # formats its text with % and marks it safe, for literals only.
    app.jinja_env.globals.update(
        client_i18n=page_client_i18n, page_language=language, translated=translated
    )
    app.after_request(_vary)
    _warn_if_not_compiled()


def _warn_if_not_compiled() -> None:
    """A .po without its compiled .mo (or older than it) means English pages: say so."""
    for po in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"):
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            log.warning(
                "%s is not compiled (or out of date): run `make compile-translations`",
                po.relative_to(ROOT),
            )


def best_match(accept_language: str | None) -> str | None:
    """The translated language an Accept-Language header prefers most: `de-DE` is `de`,
    and `en-GB,de;q=0.5` is English (Werkzeug's best_match would pick the exact `de`)."""
    if not accept_language:
        return None
    for value, quality in parse_accept_header(accept_language, LanguageAccept):  # best first
        primary = value.split("-")[0].split("_")[0].lower()
        if quality > 0 and primary in TRANSLATED:
            return primary
    return None


def choose(language: str | None, accept_language: str | None, default: str) -> str:
    """The rule: the person's choice if we translate it, else the browser's, else the
    school's default."""
    if language in TRANSLATED:
        return language
    return best_match(accept_language) or default


def request_locale() -> str:
    """Flask-Babel's locale selector: `choose` for this request (no request: the school's
    default). Only a session's person counts; an API token's owner is not the reader."""
    default = current_app.config["DEFAULT_LANGUAGE"]
    if not has_request_context():
        return default
    from flask_login import current_user

    own = current_user.language if current_user and current_user.is_authenticated else None
    return choose(own, request.headers.get("Accept-Language"), default)


def for_recipient(language: str | None, config: Mapping) -> str:
    """The language of a message to one person with no request: theirs, else the school's."""
    return language if language in TRANSLATED else config["DEFAULT_LANGUAGE"]


@contextmanager
def speaking(language: str | None, config: Mapping) -> Iterator[str]:
    """Translate as `language`'s recipient reads it, inside an app context."""
    locale = for_recipient(language, config)
    with force_locale(locale):
        yield locale


def language() -> str:
    """The language of what is being rendered now ("en" outside any context)."""
    locale = get_locale()
    return locale.language if locale is not None else SOURCE_LANGUAGE


def _vary(response):
    """A response in the request's language varies with Accept-Language (caches)."""
    if getattr(g, "_flask_babel", None) is not None and hasattr(g._flask_babel, "babel_locale"):
        response.vary.add("Accept-Language")
    return response


# Stored values as pages show them ----------------------------------------------------
# Lower case, as inside a sentence (`|capitalize` for headings and choices); a role's
# plural is also a class's audience ("students of 7b").
LABELS = {
    "role": {
        "admin": N_("admin"),
        "teacher": N_("teacher"),
        "student": N_("student"),
        "guardian": N_("guardian"),
    },
    "roles": {
        "admin": N_("admins"),
        "teacher": N_("teachers"),
        "student": N_("students"),
        "guardian": N_("guardians"),
        "students": N_("students"),
        "guardians": N_("guardians"),
        "teachers": N_("teachers"),
    },
    "priority": {"normal": N_("normal"), "urgent": N_("urgent"), "emergency": N_("emergency")},
    "state": {
        "pending": N_("pending"),
        "delivered": N_("delivered"),
        "read": N_("read"),
        "acknowledged": N_("confirmed"),
        "unconfirmed": N_("not confirmed yet"),
    },
    "stage": {
        "scheduled": N_("scheduled"),
        "failed": N_("failed"),
        "cancelled": N_("cancelled"),
        "sent": N_("sent"),
        "withdrawn": N_("withdrawn"),
        "expired": N_("expired"),
        "over": N_("over"),
    },
}


def sentence(text: str) -> str:
    """The first letter in upper case, the rest as it is ("alle Lehrkräfte" -> "Alle
    Lehrkräfte"; Jinja's capitalize would lower the rest)."""
    text = str(text)
    return text[:1].upper() + text[1:]


def label(value: object, kind: str) -> str:
    """A stored value (an enum or its string) in the current language, e.g.
    label(Role.TEACHER, "role") -> "teacher" / "Lehrkraft"; unknown ones as they are."""
    raw = getattr(value, "value", value)
    message = LABELS[kind].get(str(raw))
    return gettext(message) if message else str(raw)


def person_name(name: str) -> str:
    """A stored name as pages show it: an erased account's placeholder name (stored in
    English, services/privacy.ERASED_NAME) in the current language, any other as it is."""
    from .services.privacy import ERASED_NAME  # services import this module

    return gettext(ERASED_NAME) if name == ERASED_NAME else name


# Times -------------------------------------------------------------------------------
def local_time(moment: datetime) -> str:
    """A time as people read it: the school's zone, the language's format, e.g.
    "01 Dec 2026, 08:00 CET" / "01.12.2026, 08:00 MEZ"."""
    return format_datetime(moment, DATETIME_FORMATS.get(language(), DATETIME_FORMATS["en"]))


def local_date(moment: datetime) -> str:
    """A day, in the school's zone: "01 Dec 2026" / "01.12.2026"."""
    return format_datetime(moment, DATE_FORMATS.get(language(), DATE_FORMATS["en"]))


def clock(moment: datetime) -> str:
    """The time of day to the second, in the school's zone: "08:00:05"."""
    return format_datetime(moment, CLOCK_FORMAT)


# The browser client's strings ---------------------------------------------------------
@cache
def client_messages() -> tuple[str, ...]:
    """Every string the browser scripts mark, read from the scripts themselves with
    Babel's extractor (the same one `make translations` uses), once per process."""
    found: dict[str, None] = {}
    for path in CLIENT_SCRIPTS:
        for _line, message, _comments, _context in extract_from_file(
            "javascript", str(ROOT / path), keywords={"_": None, "N_": None}
        ):
            found[message] = None
    return tuple(found)


_client_strings: dict[str, dict[str, str]] = {}


def client_strings(app: Flask, locale: str) -> dict[str, str]:
    """The client's strings in `locale` ({English: translated}); empty for English, which
    the scripts carry built in. Built once per language and process, then shared: a
    hello costs no translating (and the socket needs no app context for it)."""
    if locale == SOURCE_LANGUAGE or locale not in TRANSLATED:
        return {}
    strings = _client_strings.get(locale)
    if strings is None:
        with app.app_context(), force_locale(locale):
            translated = {message: gettext(message) for message in client_messages()}
        strings = {english: text for english, text in translated.items() if text != english}
        _client_strings[locale] = strings
    return strings


def client_i18n(app: Flask, locale: str) -> dict:
    """What the browser client needs to speak `locale`: the language, the school's time
    zone, and the strings (none for English). Sent in `hello`, and put in pages."""
    i18n: dict = {"locale": locale, "time_zone": app.config["TIMEZONE"]}
    strings = client_strings(app, locale)
    if strings:
        i18n["strings"] = strings
    return i18n


def page_client_i18n() -> dict:
    """client_i18n for the page being rendered (base.html hands it to schoolbell.js)."""
    return client_i18n(current_app._get_current_object(), language())  # type: ignore[attr-defined]
