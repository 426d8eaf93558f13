"""Deep work for a long-lived socket, run in a short-lived greenlet."""

from __future__ import annotations

import contextvars

import gevent
from flask import Flask


def in_short_greenlet(function, *args, app: Flask | None = None):
    """Run `function(*args)` in a short-lived greenlet of its own and return what it
    returns (or raise what it raises); in an app context of `app` when given (a socket's
    own greenlet has none). The caller's context variables (a request context, when
    there is one) come along.

    Why: a socket's greenlet lives as long as the socket, and keeps the frame-stack
    memory its deepest call ever touched (CPython 3.11 gives each greenlet its own 16 KB
    data stack chunk): SQLAlchemy queries or template rendering run on it would cost
    every idle socket several KB, for the whole day."""
    outcome: list = []

    def run() -> None:
        try:
            if app is None:
                outcome.append((True, function(*args)))
            else:
                with app.app_context():
                    outcome.append((True, function(*args)))
        except BaseException as exc:  # handed to the caller, not gevent's error printer
            outcome.append((False, exc))

    gevent.spawn(contextvars.copy_context().run, run).join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value
