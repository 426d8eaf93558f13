"""Fan-out between processes. The database is the source of truth; a broker only gets
events to every process's hub quickly. A lost event costs latency, never a message:
after every (re)subscribe a process catches up from the database, and clients catch up
by replay when they (re)connect.

`publish(event)` hands the event to this process's handler at once (the very value,
with what only this process holds) and, with Redis, puts `event.encode()` on one
channel for every other process, which gives `events.decode()` to its own handler.
Either way one dispatcher greenlet runs the handler, in order, so the request that
publishes returns at once and broadcasts never interleave.

- `memory://` (default): one process; nothing to carry.
- `redis://host:6379/0`: many processes and hosts. Its pub/sub link is supervised: a
  greenlet of its own, reconnecting with backoff (1 s, doubling, to 5 s), and a probe
  (a message to itself every BROKER_PROBE_INTERVAL_S) that must come back within
  BROKER_PROBE_TIMEOUT_S, or the link counts as dead and is replaced: a half-open TCP
  connection otherwise looks healthy forever. Publishing never blocks a request: events
  wait in a bounded outbox while Redis is away and go out when it is back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime

import gevent
from gevent.event import Event as Flag
from gevent.queue import Queue

from .. import metrics
from ..db import utcnow
from . import events
from .events import Event

log = logging.getLogger(__name__)

Handler = Callable[[Event], None]
# Called after each subscribe with the last moment the link was known to be whole (None
# the first time): what was committed since may never have arrived.
OnSubscribed = Callable[[datetime | None], None]


def process_name() -> str:
    """This process among all of them: host, pid and a random suffix (pids repeat)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Broker:
    """Publish an event to every process, this one first; one process by itself."""

    kind = "memory"

    def __init__(self) -> None:
        self.process = process_name()
        metrics.BROKER_CONNECTED.set(self.kind == "memory")  # one process: nothing to lose
        self._queue: Queue = Queue()
        self._handler: Handler | None = None
        self._dispatcher: gevent.Greenlet | None = None

    def start(self, handler: Handler) -> None:
        """Give every event, this process's and others', to `handler`."""
        self._handler = handler

    def serve(self, on_subscribed: OnSubscribed) -> None:
        """Listen to the other processes (server workers only, not CLI commands)."""

    def publish(self, event: Event) -> None:
        self.dispatch(event)

    def dispatch(self, event: Event) -> None:
        """Queue an event for this process's handler."""
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

    def status(self) -> dict:
        """For /healthz: whether events reach the other processes."""
        return {"kind": self.kind, "state": "ok"}

    def stop(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.kill(block=False)


class ProbeLost(Exception):
    """The pub/sub link did not answer in time: treat it as dead."""


class RedisBroker(Broker):
    """Events on one Redis pub/sub channel, shared by every process of the school."""

    kind = "redis"
    BACKOFF_MIN_S = 1.0
    # A retry is one refused TCP connect: cheap, even for a hundred workers. With 30 s
    # here a worker stayed deaf for up to 36 s after a 30 s outage ended (its tabs
    # waited that long); with 5 s it is back within about 6 s.
    BACKOFF_MAX_S = 5.0
    MAX_OUTBOX = 10_000  # events waiting for Redis; the oldest go first when full
    WARN_EVERY_S = 60

    def __init__(
        self,
        client,
        *,
        channel: str = "schoolbell:events",
        probe_interval_s: float = 20.0,
        probe_timeout_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.client = client  # redis.Redis with short socket timeouts (redis_client())
        self.channel = channel
        self.probe_interval_s = probe_interval_s
        self.probe_timeout_s = probe_timeout_s
        self.state = "starting"  # -> connected | down
        self.down_since: float | None = None  # time.monotonic()
        self.last_message_at: float | None = None  # an event or a probe came back
        # The last moment from which on every event was known to arrive (None: not
        # subscribed yet): a new subscription catches up from there.
        self.whole_until: datetime | None = None
        self.published = self.dropped = self.refused = 0
        self._outbox: deque[bytes] = deque()
        self._wake = Flag()
        self._greenlets: list[gevent.Greenlet] = []
        self._warned_at = 0.0

    @property
    def probe_channel(self) -> str:
        return f"{self.channel}:probe:{self.process}"

    # Publishing ------------------------------------------------------------------------
    def publish(self, event: Event) -> None:
        self.dispatch(event)
        frame = self.process.encode() + b" " + event.encode()
        if not self._greenlets:  # not serving (a CLI command): once, now, best effort
            try:
                self.client.publish(self.channel, frame)
            except Exception as exc:  # redis-py raises RedisError and OSError alike
                log.warning("Redis unavailable; %s event not published: %s", event.TYPE, exc)
            return
        if len(self._outbox) >= self.MAX_OUTBOX:
            self._outbox.popleft()
            self.dropped += 1
            self._warn("broker outbox full: dropped the oldest event (catch-up will fill in)")
        self._outbox.append(frame)
        self._wake.set()

    def _publish_forever(self) -> None:
        """Send the outbox in order; while Redis is away, keep it and try again."""
        backoff = self.BACKOFF_MIN_S
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._outbox:
                try:
                    self.client.publish(self.channel, self._outbox[0])
                except Exception as exc:
                    self._warn(f"publishing to Redis failed ({exc}); {len(self._outbox)} waiting")
                    gevent.sleep(backoff)
                    backoff = min(backoff * 2, self.BACKOFF_MAX_S)
                    continue
                self._outbox.popleft()
                self.published += 1
                backoff = self.BACKOFF_MIN_S

    # Listening -------------------------------------------------------------------------
    def serve(self, on_subscribed: OnSubscribed) -> None:
        self.process = process_name()  # after gunicorn's fork: this worker's own
        metrics.BROKER_LAST_EVENT.set(time.time())  # its age counts from the start
        self._greenlets = [
            gevent.spawn(self._listen_forever, on_subscribed),
            gevent.spawn(self._publish_forever),
        ]
        self._wake.set()

    def _listen_forever(self, on_subscribed: OnSubscribed) -> None:
        """Keep one subscription alive, whatever happens to Redis or the network."""
        backoff = self.BACKOFF_MIN_S
        while True:
            pubsub = self.client.pubsub()
            started = time.monotonic()
            try:
                self._listen(pubsub, on_subscribed)
            except Exception as exc:  # RedisError, OSError, ProbeLost: start over
                if self.state != "down":
                    self.down_since = time.monotonic()
                    log.warning("Redis broker link lost (%s); reconnecting", exc)
                self.state = "down"
                metrics.BROKER_CONNECTED.set(0)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
            if time.monotonic() - started > self.BACKOFF_MAX_S:
                backoff = self.BACKOFF_MIN_S  # it had been up a while: retry soon
            gevent.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self.BACKOFF_MAX_S)

    def _listen(self, pubsub, on_subscribed: OnSubscribed) -> None:
        """Subscribe, catch up, then hand over events and probe, until the link fails
        (it raises then)."""
        subscribing_at = utcnow()
        pubsub.subscribe(self.channel, self.probe_channel)
        self._await_subscribed(pubsub)
        if self.state == "down":
            log.warning(
                "Redis broker link back after %.1f s; catching up from the database",
                time.monotonic() - (self.down_since or time.monotonic()),
            )
        self.state, self.down_since = "connected", None
        metrics.BROKER_CONNECTED.set(1)
        metrics.BROKER_LAST_EVENT.set(time.time())
        self._wake.set()  # publish what waited
        gevent.spawn(on_subscribed, self.whole_until)
        self.whole_until = subscribing_at  # everything published since arrives here
        next_probe = time.monotonic() + self.probe_interval_s
        probe: bytes | None = None  # the probe on its way
        probe_sent = deadline = None
        while True:
            now = time.monotonic()
            if probe is None and now >= next_probe:
                probe, probe_sent = secrets.token_hex(8).encode(), utcnow()
                self.client.publish(self.probe_channel, probe)
                deadline = now + self.probe_timeout_s
            elif probe is not None and now >= deadline:
                raise ProbeLost(f"no probe back within {self.probe_timeout_s:g} s")
            message = pubsub.get_message(timeout=1.0)
            if message is None or message["type"] != "message":
                continue
            self.last_message_at = time.monotonic()
            metrics.BROKER_LAST_EVENT.set(time.time())  # an event's cost, not a frame's
            if message["channel"] != self.probe_channel.encode():
                self._received(message["data"])
            elif message["data"] == probe:
                # Redis delivers in the order it was given messages: whatever any
                # process published before the probe has arrived.
                probe, self.whole_until = None, probe_sent
                next_probe = time.monotonic() + self.probe_interval_s

    def _await_subscribed(self, pubsub) -> None:
        """Both subscriptions confirmed within the probe timeout, or ProbeLost."""
        deadline, confirmed = time.monotonic() + self.probe_timeout_s, 0
        while confirmed < 2:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProbeLost("Redis did not confirm the subscription")
            message = pubsub.get_message(timeout=min(left, 1.0))
            if message is not None and message["type"] == "subscribe":
                confirmed += 1

    def _received(self, data: bytes) -> None:
        """An event from some process: this one's own were handled when published."""
        origin, _, raw = data.partition(b" ")
        if origin == self.process.encode():
            return
        try:
            event = events.decode(raw)
        except events.EventError as exc:
            self.refused += 1
            self._warn(f"refused a broker message from {origin[:80]!r}: {exc}")
            return
        self.dispatch(event)

    # Health ----------------------------------------------------------------------------
    def status(self) -> dict:
        now = time.monotonic()
        status = {
            "kind": self.kind,
            "state": "ok" if self.state == "connected" else self.state,
            "published_events": self.published,
            "waiting_events": len(self._outbox),
            "dropped_events": self.dropped,  # the outbox overflowed while Redis was away
            "refused_events": self.refused,  # messages on the channel that were no event
        }
        if self.last_message_at is not None:
            status["last_message_age_s"] = round(now - self.last_message_at, 1)
        if self.down_since is not None:
            status["down_for_s"] = round(now - self.down_since, 1)
        return status

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= self.WARN_EVERY_S:
            self._warned_at = now
            log.warning(message)

    def stop(self) -> None:
        super().stop()
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        # Send what still waits, unless Redis is away: then the other processes catch
        # up from the database when it is back (a shutdown must not wait for it).
        with contextlib.suppress(Exception):
            while self._outbox and self.state == "connected":
                self.client.publish(self.channel, self._outbox.popleft())


def redis_client(url: str):
    """A redis-py client whose every call fails within seconds when Redis is away or
    the link hangs (callers decide what to do then), instead of retrying for long."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=2,
        socket_connect_timeout=2,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 1),  # one quick retry: a pooled link Redis closed
        health_check_interval=0,
    )


def make_broker(config: dict) -> Broker:
    """The broker for SCHOOLBELL_BROKER_URL."""
    url = config["BROKER_URL"]
    if url in ("", "memory://"):
        return Broker()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBroker(
            redis_client(url),
            probe_interval_s=config["BROKER_PROBE_INTERVAL_S"],
            probe_timeout_s=config["BROKER_PROBE_TIMEOUT_S"],
        )
    raise ValueError(
        f"unsupported SCHOOLBELL_BROKER_URL {url!r}: use memory:// (one process) or "
        "redis://host:6379/0"
    )
