"""Fan-out between processes. The database is the source of truth; a broker only gets
events to every process's hub quickly. A lost event costs latency, never a message:
clients catch up by replay when they (re)connect.

Events are typed values (`events.py`). `memory://` (default) serves one process and
hands them over as they are, never encoded. A Redis broker for many workers plugs in
here behind the same two calls, `start(handler)` and `publish(event)`, and puts
`event.encode()` on the wire and `events.decode()` behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent
from gevent.queue import Queue

from .events import Event

log = logging.getLogger(__name__)

Handler = Callable[[Event], None]


class Broker:
    """The interface: publish an event to every process (this one included)."""

    def start(self, handler: Handler) -> None:
        raise NotImplementedError

    def publish(self, event: Event) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass


class InProcessBroker(Broker):
    """One process: events go through a queue to one dispatcher greenlet, in order,
    so the request that publishes returns at once and broadcasts never interleave."""

    def __init__(self) -> None:
        self._queue: Queue = Queue()
        self._handler: Handler | None = None
        self._dispatcher: gevent.Greenlet | None = None

    def start(self, handler: Handler) -> None:
        self._handler = handler

    def publish(self, event: Event) -> None:
        if self._handler is None:
            return  # no hub in this process (e.g. a CLI command): replay will deliver
        self._queue.put(event)
        if self._dispatcher is None or self._dispatcher.dead:
            self._dispatcher = gevent.spawn(self._dispatch)

    def _dispatch(self) -> None:
        while not self._queue.empty():
            event = self._queue.get()
            try:
                self._handler(event)
            except Exception:  # one bad event must not stop delivery of the next
                log.exception("broker handler failed on %s event", event.TYPE)

    def stop(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.kill(block=False)


def make_broker(url: str) -> Broker:
    """The broker for a SCHOOLBELL_BROKER_URL."""
    if url in ("", "memory://"):
        return InProcessBroker()
    raise ValueError(
        f"unsupported SCHOOLBELL_BROKER_URL {url!r}: this version supports memory:// only"
    )
