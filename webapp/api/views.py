"""API views: parse the JSON body, call one service, answer JSON.

Errors are `{"error": {"code", "message"}}` (webapp/errors.py): 401 `not_authenticated`
or `invalid_token`, 403 `forbidden`, 415 `unsupported_media_type`, 400 `invalid_json`,
`unknown_field` (details.fields) or `validation_failed` (details.field), plus the codes
of the services (`duplicate_email`, `class_not_found`, ...): all in docs/errors.md.
"""

from __future__ import annotations

from flask import current_app, jsonify, url_for

from ..db import get_session
from ..extensions import client_address
from ..realtime.live import live
from ..services import api_tokens, classes, privacy
from . import bp, schemas
from .auth import api_user


@bp.post("/users")
def create_user():
    """Create a user with their classes and wards; 201 with a Location header.

    An unknown class or ward is 404 (`class_not_found`, `user_not_found`), as for any
    name that does not exist; a duplicate email is 409 `duplicate_email`; a ward who is
    not a student, or `guardian_of` on a non-guardian, is 400. Nothing is saved on error.
    """
    body = schemas.json_body(schemas.USER_FIELDS)
    person = classes.create_with_links(
        get_session(),
        api_user(),
        schemas.user_input(body),
        body.get("classes") or [],
        body.get("guardian_of") or [],
        client_address(),
    )
    location = url_for(".get_user", email=person.user.email)
    return jsonify(schemas.user_json(person)), 201, {"Location": location}


@bp.get("/users/<email>")
def get_user(email: str):
    """One user with their classes and wards; 404 `user_not_found`."""
    person = classes.person_by_email(get_session(), api_user(), email)
    return jsonify(schemas.user_json(person))


@bp.get("/users/<email>/export")
def export_user(email: str):
    """Everything held about a person (admins only; audited); 404 `user_not_found`."""
    return jsonify(privacy.export_by_email(get_session(), api_user(), email, client_address()))


@bp.post("/users/<email>/erase")
def erase_user(email: str):
    """Erase a person for good (admins only; audited); their open sockets close in every
    process. 404 `user_not_found`, 409 `already_erased`, 400 `self_erasure`."""
    erased = privacy.erase_by_email(get_session(), api_user(), email, client_address())
    live().user_disabled(erased.user_id)
    return jsonify(schemas.erased_json(erased))


@bp.post("/classes")
def create_class():
    """Create a class; 409 `duplicate_class`, 400 `invalid_class_name`."""
    body = schemas.json_body(schemas.CLASS_FIELDS)
    school_class = classes.create(get_session(), api_user(), body["name"], client_address())
    return jsonify(schemas.class_json(school_class)), 201


@bp.post("/tokens")
def issue_token():
    """A client JWT for a user (admins only); 404 unknown user, 400 `user_inactive`."""
    body = schemas.json_body(schemas.TOKEN_FIELDS)
    issued = api_tokens.issue_for_email(
        get_session(), current_app.config, api_user(), body["email"], client_address()
    )
    return jsonify(schemas.client_token_json(issued)), 201
