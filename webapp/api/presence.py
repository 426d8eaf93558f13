"""GET /api/v1/presence: who is online, across every process, as the caller may see it."""

from __future__ import annotations

from flask import jsonify

from ..db import get_session
from ..realtime.live import live
from ..services import presence
from . import bp, schemas
from .auth import api_user


@bp.get("/presence")
def get_presence():
    """Online / total per role and per class, and the online people (tabs, since):
    the whole school for admins, a teacher's own classes; 403 `forbidden` otherwise."""
    summary = presence.visible_to(get_session(), api_user(), live().presence.online())
    return jsonify(schemas.presence_json(summary))
