"""What a dashboard socket may watch (`/ws?watch=...`): topic names, parsed and
validated here, and a registry from a topic's kind to what it was given for that kind
(who may watch it, and how to render its fragment).

Fragments speak their watchers' language: a watcher whose language is not the school's
default watches `<topic>@<language>`, rendered apart (once per language and push, never
per socket).

Realtime knows no templates: the blueprint that owns a fragment registers it at app
set-up (the dashboard: `dashboard/components.py`), so the fragment a socket gets is
the very component its page includes and its fragment endpoint returns.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from flask import Flask, current_app
from flask_babel import force_locale
from sqlalchemy.orm import Session

from .. import errors
from ..db import session_scope
from ..models import User
from .hub import Connection

ONLINE = "online"
NOTIFICATION = "notification"
MAX_TOPICS = 10

# authorize(session, user, arg) -> the topic this user gets for `<kind>[:<arg>]`, or
# raises a DomainError (Forbidden, NotFound) saying why not.
Authorize = Callable[[Session, User, str], str]
# render(session, arg) -> the current HTML fragment of the topic `<kind>[:<arg>]`, or None
# when there is nothing to show (the socket then gets nothing).
Render = Callable[[Session, str], str | None]


@dataclass(frozen=True, slots=True)
class Kind:
    """What the owner of a topic kind registered for it."""

    authorize: Authorize
    render: Render


def register(app: Flask, kind: str, *, authorize: Authorize, render: Render) -> None:
    """Serve topics of this kind with these functions (called by blueprints at set-up)."""
    app.extensions.setdefault("schoolbell.topics", {})[kind] = Kind(authorize, render)


def _kinds() -> dict[str, Kind]:
    return current_app.extensions.get("schoolbell.topics", {})


def notification_topic(notification_id: int) -> str:
    return f"{NOTIFICATION}:{notification_id}"


def parse(spec: str) -> list[str]:
    """'online,notification:5' -> ['online', 'notification:5'] (validated shapes)."""
    names = [part.strip() for part in (spec or "").split(",") if part.strip()]
    if len(names) > MAX_TOPICS:
        raise errors.TOO_MANY_TOPICS.error(max=MAX_TOPICS)
    for name in names:
        kind, _, arg = name.partition(":")
        if not ((kind == ONLINE and not arg) or (kind == NOTIFICATION and arg.isdigit())):
            raise errors.BAD_WATCH.error(topic=name)
    return names


def authorize(session: Session, user: User, name: str) -> str:
    """The topic this user gets for `name`, as its kind's owner decides, or the
    DomainError it raised."""
    kind, _, arg = name.partition(":")
    registered = _kinds().get(kind)
    if registered is None:
        raise errors.BAD_WATCH.error(topic=name)
    return registered.authorize(session, user, arg)


def localised(topic: str, locale: str) -> str:
    """The hub's name for `topic` as watchers speaking `locale` get it."""
    return topic if locale == current_app.config["DEFAULT_LANGUAGE"] else f"{topic}@{locale}"


def base(topic: str) -> str:
    """The topic a localised name stands for: 'notification:5@de' -> 'notification:5'."""
    return topic.partition("@")[0]


def render(session: Session, topic: str) -> str | None:
    """The current HTML fragment of a topic (None for a kind nobody registered), in its
    language. Call it in `rendering_context(app)` when there is no request."""
    name, _, locale = topic.partition("@")
    kind, _, arg = name.partition(":")
    registered = _kinds().get(kind)
    if registered is None:
        return None
    if not locale:
        return registered.render(session, arg)
    with force_locale(locale):
        return registered.render(session, arg)


def rendering_context(app: Flask) -> AbstractContextManager:
    """A request context to render fragments in when no request is being served.

    Fragments are the pages' own templates, and templates call `url_for` and use
    request-bound globals (`request`, `current_user`, `g`), which need a request
    context. A push has none: it is triggered by a receipt batch or a presence change,
    and the first fragment of a new watcher is rendered in the socket's own greenlet,
    long after its admission's request was closed."""
    return app.test_request_context()


def watch(conn: Connection, spec: str, locale: str) -> list[str | None]:
    """Check and subscribe each topic of `?watch=spec` for the socket's user, in the
    socket's language; return each one's current fragment. Runs in an app context (a
    socket's `in_short_greenlet`)."""
    with rendering_context(current_app), session_scope() as session:
        account = session.get(User, conn.user_id)
        names = [localised(authorize(session, account, name), locale) for name in parse(spec)]
        # Watch first, then render: a change in between is pushed, never missed.
        for name in names:
            conn.hub.watch(conn, name)
        return [render(session, name) for name in names]
