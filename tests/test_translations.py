"""German and English: every message in the source has its German translation (found
with Babel's own extraction, configured by babel.cfg), and pages, error messages and
times come in the reader's language: their own choice, else the browser's, else the
school's."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import werkzeug.exceptions
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po
from sqlalchemy import update

from webapp import errors, i18n
from webapp.db import get_session
from webapp.models import User

from .conftest import make_test_app
from .helpers import post_form

ROOT = Path(__file__).resolve().parent.parent
GERMAN = ROOT / "webapp/translations/de/LC_MESSAGES/messages.po"
PERCENT = re.compile(r"%\(\w+\)[sdifr]")
BRACE = re.compile(r"(?<!\{)\{\w+(?:![rsa])?\}(?!\})")


# The check -----------------------------------------------------------------------------
def extracted(root: Path, mapping: Path) -> dict[str | tuple[str, ...], list[str]]:
    """Every message Babel finds under `root` with `mapping` (babel.cfg), and where."""
    with mapping.open() as fh:
        method_map, options_map = parse_mapping_cfg(fh, str(mapping))
    found: dict[str | tuple[str, ...], list[str]] = {}
    for filename, line, message, _comments, _context in extract_from_dir(
        str(root), method_map, options_map, keywords=DEFAULT_KEYWORDS
    ):
        found.setdefault(message, []).append(f"{filename}:{line}")
    return found


def placeholders(text: str) -> Counter:
    """The %(name)s and {name} fields of a message (its literal `{{` / `%%` aside)."""
    return Counter(PERCENT.findall(text) + BRACE.findall(text))


def catalogue_problems(root: Path, mapping: Path, po: Path) -> list[str]:
    """What keeps the source and the catalogue `po` apart, one line each, naming where
    the message is used: missing, empty or fuzzy translations, and translations whose
    placeholders differ from their message's."""
    with po.open("rb") as fh:
        catalogue = read_po(fh)
    problems = []
    for message, where in extracted(root, mapping).items():
        entry = catalogue.get(message)
        at = ", ".join(where[:3])
        if entry is None:
            problems.append(f"{at}: {message!r} is not in {po.name} (run `make translations`)")
            continue
        forms = [entry.string] if isinstance(entry.string, str) else list(entry.string)
        if not all(forms):
            problems.append(f"{at}: {message!r} has no translation in {po}")
        elif entry.fuzzy:
            problems.append(f"{at}: {message!r} is fuzzy (check it, then drop the flag) in {po}")
        else:
            originals = [message] if isinstance(message, str) else list(message)
            wanted = [placeholders(text) for text in originals]
            for form in forms:
                if placeholders(form) not in wanted:
                    problems.append(
                        f"{at}: {message!r} -> {form!r}: the placeholders differ "
                        f"({sorted(placeholders(form).elements())} instead of "
                        f"{sorted(wanted[-1].elements())})"
                    )
    return problems


def test_every_message_of_the_source_has_its_german_translation():
    problems = catalogue_problems(ROOT, ROOT / "babel.cfg", GERMAN)
    assert problems == [], "\n".join(["German translations missing or wrong:", *problems])


def test_the_check_fails_on_a_missing_an_empty_a_fuzzy_and_a_mistyped_translation(tmp_path):
    (tmp_path / "webapp").mkdir()
    (tmp_path / "webapp/page.py").write_text(
        "from webapp.i18n import N_\n"
        "HELLO = N_('Hello')\n"
        "BYE = N_('Bye %(name)s')\n"
        "LATER = N_('See you {when}')\n"
        "NEW = N_('Brand new')\n"
        "EMPTY = N_('Nothing yet')\n"
        "FINE = N_('Fine')\n"
    )
    (tmp_path / "babel.cfg").write_text("[python: webapp/**.py]\n")
    catalogue = Catalog(locale="de")
    catalogue.add("Hello", "Hallo", flags=["fuzzy"])
    catalogue.add("Bye %(name)s", "Tschüss %(nome)s")
    catalogue.add("See you {when}", "Bis {wann}")
    catalogue.add("Nothing yet", "")
    catalogue.add("Fine", "Gut")
    po = tmp_path / "messages.po"
    with po.open("wb") as fh:
        write_po(fh, catalogue)
    problems = catalogue_problems(tmp_path, tmp_path / "babel.cfg", po)
    assert len(problems) == 5, problems
    said = "\n".join(problems)
    assert "page.py:2: 'Hello' is fuzzy" in said
    assert "page.py:3: 'Bye %(name)s'" in said and "placeholders differ" in said
    assert "page.py:4: 'See you {when}'" in said
    assert "page.py:5: 'Brand new' is not in messages.po (run `make translations`)" in said
    assert "page.py:6: 'Nothing yet' has no translation" in said


def test_the_catalogue_keeps_werkzeugs_own_descriptions():
    """errors.WERKZEUG_DESCRIPTIONS are translated by their English text: if Werkzeug
    rewords one, its error page would stay English."""
    for exception in (
        werkzeug.exceptions.BadRequest,
        werkzeug.exceptions.Unauthorized,
        werkzeug.exceptions.Forbidden,
        werkzeug.exceptions.NotFound,
        werkzeug.exceptions.MethodNotAllowed,
        werkzeug.exceptions.UnsupportedMediaType,
    ):
        assert exception.description in errors.WERKZEUG_DESCRIPTIONS


def test_the_client_strings_are_the_scripts_own():
    """What the server hands the browser client is what its scripts mark, translated."""
    messages = i18n.client_messages()
    assert {"Confirm", "Dismiss", "Reconnecting…", "I'm safe", "Turn off"} <= set(messages)


# The reader's language ---------------------------------------------------------------
def set_language(app, email: str, language: str | None) -> None:
    with app.app_context():
        session = get_session()
        session.execute(update(User).where(User.email == email).values(language=language))
        session.commit()


@pytest.mark.parametrize(
    ("accept_language", "heading"),
    [
        ("de", "Anmelden"),
        ("de-DE,de;q=0.9,en;q=0.8", "Anmelden"),
        ("fr-FR,de;q=0.5", "Anmelden"),  # French is not spoken: German is the best match
        ("en-GB,de;q=0.5", "Sign in"),
        ("fr", "Sign in"),  # neither: the school's default
        (None, "Sign in"),
    ],
)
def test_a_page_speaks_the_browsers_language(client, accept_language, heading):
    headers = {"Accept-Language": accept_language} if accept_language else {}
    response = client.get("/signin", headers=headers)
    html = response.get_data(as_text=True)
    assert f"<h1>{heading}</h1>" in html
    assert f'<html lang="{"de" if heading == "Anmelden" else "en"}">' in html
    assert "Accept-Language" in response.headers["Vary"]


def test_the_schools_default_language_serves_browsers_that_ask_for_neither(database_url, tmp_path):
    app = make_test_app(database_url, tmp_path, DEFAULT_LANGUAGE="de")
    client = app.test_client()
    assert "<h1>Anmelden</h1>" in client.get("/signin").get_data(as_text=True)
    english = client.get("/signin", headers={"Accept-Language": "en"})
    assert "<h1>Sign in</h1>" in english.get_data(as_text=True)


def test_a_person_who_chose_german_gets_german_pages_whatever_the_browser_says(
    app, client, make_user, auth
):
    student = make_user("student", email="lena@school.test", name="Lena")
    set_language(app, student.email, "de")
    auth.signin(student.email)
    html = client.get("/inbox", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="de">' in html
    assert "Ihre Ankündigungen" in html and "Abmelden" in html
    assert "Your announcements" not in html
    # The client's strings come with the page, for schoolbell.js before its socket is up.
    block = re.search(r'<script type="application/json" id="schoolbell-i18n">(.*?)</script>', html)
    strings = json.loads(block.group(1))
    assert strings["locale"] == "de" and strings["strings"]["Dismiss"] == "Schließen"


def test_a_language_schoolbell_does_not_speak_leaves_it_to_the_browser(
    app, client, make_user, auth
):
    student = make_user("student", email="luc@school.test")
    set_language(app, student.email, "fr")
    auth.signin(student.email)
    assert "Ihre Ankündigungen" in client.get("/inbox", headers={"Accept-Language": "de"}).get_data(
        as_text=True
    )
    assert "Your announcements" in client.get("/inbox").get_data(as_text=True)


def test_people_choose_their_language_in_settings_or_leave_it_to_the_browser(
    app, client, make_user, auth
):
    student = make_user("student", email="mia@school.test")
    auth.signin(student.email)
    page = client.get("/settings").get_data(as_text=True)
    assert '<option selected value="">Browser default</option>' in page
    response = post_form(client, "/settings/language", {"language": "de"}, page="/settings")
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Ihre Sprache ist gespeichert." in page and "<h1>Einstellungen</h1>" in page
    assert '<option selected value="de">Deutsch</option>' in page
    with app.app_context():
        assert get_session().get(User, student.id).language == "de"
    post_form(client, "/settings/language", {"language": ""}, page="/settings")
    with app.app_context():
        assert get_session().get(User, student.id).language is None
    assert "<h1>Settings</h1>" in client.get("/settings").get_data(as_text=True)
    refused = post_form(client, "/settings/language", {"language": "xx"}, page="/settings")
    assert refused.status_code == 400
    assert "Unsupported language &#39;xx&#39;" in refused.get_data(as_text=True)


def test_an_api_error_speaks_the_callers_language_and_keeps_its_code(app, admin, client):
    from .test_api import new_api_token

    token = new_api_token(app, admin.id)
    headers = {"Authorization": f"Bearer {token}"}
    german = client.get(
        "/api/v1/users/nobody@school.test", headers=headers | {"Accept-Language": "de"}
    )
    assert german.status_code == 404
    assert german.get_json() == {
        "error": {
            "code": "user_not_found",
            "message": "Kein Konto mit der E-Mail 'nobody@school.test'.",
        }
    }
    english = client.get("/api/v1/users/nobody@school.test", headers=headers)
    assert english.get_json()["error"] == {
        "code": "user_not_found",
        "message": "No user with email 'nobody@school.test'.",
    }
    invalid = client.post(
        "/api/v1/notifications",
        json={"title": "", "body": "x", "targets": {"everyone": True}},
        headers=headers | {"Accept-Language": "de-DE"},
    )
    assert invalid.get_json()["error"] == {
        "code": "title_required",
        "message": "Ein Titel ist erforderlich.",
    }


def test_an_error_page_speaks_the_browsers_language(client):
    page = client.get("/no-such-page", headers={"Accept-Language": "de"})
    html = page.get_data(as_text=True)
    assert page.status_code == 404 and 'data-error-code="not_found"' in html
    assert "<h1>Nicht gefunden</h1>" in html
    assert "Die angeforderte Adresse wurde auf dem Server nicht gefunden." in html


@pytest.mark.parametrize(
    ("language", "zone", "shown"),
    [
        ("en", "UTC", "01 Dec 2026, 07:30 UTC"),
        ("de", "UTC", "01.12.2026, 07:30 UTC"),
        ("de", "Europe/Berlin", "01.12.2026, 08:30 MEZ"),
        ("en", "Europe/Berlin", "01 Dec 2026, 08:30 +0100"),
    ],
)
def test_times_are_in_the_schools_zone_and_the_readers_format(
    database_url, tmp_path, language, zone, shown
):
    app = make_test_app(database_url, tmp_path, TIMEZONE=zone)
    moment = datetime(2026, 12, 1, 7, 30, tzinfo=UTC)
    with app.test_request_context(headers={"Accept-Language": language}):
        assert i18n.local_time(moment) == shown


def test_the_api_docs_page_says_in_the_browsers_language_that_it_needs_javascript(client):
    html = client.get("/api/docs", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert '<noscript><p lang="de">Die API-Referenz braucht JavaScript.' in html
    assert '<a href="/api/v1/openapi.json">/api/v1/openapi.json</a>' in html
    assert '<html lang="en">' in html  # Swagger UI and the descriptions stay English
