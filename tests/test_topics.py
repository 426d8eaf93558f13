"""Topics a dashboard socket may watch: names, the registry from a kind to what its owner
registered, and realtime knowing nothing of the dashboard's templates."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from flask import Flask, request, url_for

from webapp import errors
from webapp.errors import Forbidden, ValidationFailed
from webapp.realtime import topics

REALTIME = Path(topics.__file__).resolve().parent


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("online", ["online"]),
        (" online , notification:42 ", ["online", "notification:42"]),
        ("", []),
        (
            ",".join(f"notification:{n}" for n in range(10)),
            [f"notification:{n}" for n in range(10)],
        ),
    ],
)
def test_watch_specs_name_topics(spec, names):
    assert topics.parse(spec) == names


@pytest.mark.parametrize(
    "spec",
    [
        "online:5",  # a teacher's own view is the server's choice, never the client's
        "notification",
        "notification:x",
        "notification:-1",
        "everything",
        ",".join(f"notification:{n}" for n in range(11)),
    ],
)
def test_other_watch_specs_are_refused(spec):
    with pytest.raises(ValidationFailed) as refused:
        topics.parse(spec)
    assert refused.value.code == "bad_watch"


@pytest.fixture
def registry_app():
    """A bare Flask app with one kind registered: `online`, shown to user 1 only."""
    app = Flask(__name__)

    @app.get("/people/<int:user_id>")
    def person(user_id):
        return ""

    def authorize(_session, user, arg):
        if user != 1:
            raise errors.WATCH_FORBIDDEN.error()
        return f"online:{user}" if not arg else f"online:{arg}"

    def render(_session, arg):
        return f"<p data-arg={arg!r} data-link={url_for('person', user_id=7)} {request.path}>"

    topics.register(app, topics.ONLINE, authorize=authorize, render=render)
    return app


def test_a_kind_is_served_by_what_its_owner_registered(registry_app):
    with registry_app.app_context():
        assert topics.authorize(None, 1, "online") == "online:1"
        with pytest.raises(Forbidden):
            topics.authorize(None, 2, "online")


def test_a_kind_nobody_registered_is_refused_and_renders_nothing(registry_app):
    with registry_app.app_context():
        with pytest.raises(ValidationFailed) as refused:
            topics.authorize(None, 1, "notification:5")
        assert refused.value.code == "bad_watch"
        assert topics.render(None, "notification:5") is None


def test_fragments_render_with_url_for_and_request_outside_any_request(registry_app):
    with topics.rendering_context(registry_app):
        assert topics.render(None, "online:1") == "<p data-arg='1' data-link=/people/7 />"


def test_realtime_renders_no_templates_and_imports_no_blueprint():
    """The dashboard owns its components; realtime only maps a topic to a renderer."""
    blueprints = {"auth", "dashboard", "inbox", "roster", "api", "health"}
    for path in REALTIME.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = (node.module or "").split(".")
                assert not blueprints & set(module), f"{path.name} imports {node.module}"
                names = {alias.name for alias in node.names}
                assert not names & {"render_template", "render_template_string"}, path.name
                assert not (node.level == 2 and names & blueprints), path.name
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not node.value.endswith(".html"), f"{path.name} names {node.value}"


def test_a_teachers_online_panel_shows_nothing_once_their_account_is_gone(app, make_user):
    """Never the whole school's panel instead (the topic names a teacher who left)."""
    from webapp.dashboard import components
    from webapp.db import session_scope

    teacher = make_user("teacher")
    with topics.rendering_context(app), session_scope(app) as session:
        assert "online-panel" in components.push_online(session, str(teacher.id))
        assert components.push_online(session, "999999") is None
        assert "online-panel" in components.push_online(session, "")
