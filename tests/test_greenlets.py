"""`in_short_greenlet()`: deep work for a socket runs in a short-lived greenlet, with the socket's
Flask context, and its result or exception comes back as if called directly."""

import gevent
import pytest
from flask import current_app, g

from webapp.realtime.greenlets import in_short_greenlet


def test_returns_the_result_in_another_greenlet_with_the_same_flask_context(app):
    caller = gevent.getcurrent()

    def work(x):
        g.seen = True  # the same request globals as the caller
        return x * 2, current_app.name, gevent.getcurrent() is caller

    with app.test_request_context("/ws"):
        assert in_short_greenlet(work, 21) == (42, app.name, False)
        assert g.seen


def test_raises_what_the_work_raised_without_gevent_printing_it(app, capfd):
    def fail():
        raise LookupError("no such user")

    with app.test_request_context("/ws"), pytest.raises(LookupError, match="no such user"):
        in_short_greenlet(fail)
    assert "LookupError" not in capfd.readouterr().err
