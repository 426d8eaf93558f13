"""Prometheus metrics: every definition once, what a scrape adds, and who may scrape.

Counters and histograms are bumped where things happen, once per event that matters to
an operator (a broadcast, a receipt batch, a job, a request), never once per socket of
a broadcast or per frame: one gevent worker fans out to 10,000 sockets, and with several
workers every update is a write to a memory-mapped file.

Several workers (gunicorn_conf.py) share PROMETHEUS_MULTIPROC_DIR: each writes its own
files, and a scrape, whichever worker serves it, reads them all (prometheus-client's
multiprocess mode). What is already shared (who is online, across every process; the
jobs table) is computed at scrape time by the worker serving it, once.

/metrics is off until SCHOOLBELL_METRICS_TOKEN or SCHOOLBELL_METRICS_ALLOW is set
(see scrape_refusal); the view is webapp/monitoring.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Iterable, Iterator

from flask import Flask, request, request_finished, request_started
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from . import errors

log = logging.getLogger(__name__)
# No `_created` series beside each counter: noise on a dashboard, and multiprocess mode
# has none, so one worker and several would look different.
disable_created_metrics()

# This process's metrics (one worker, or a test). With PROMETHEUS_MULTIPROC_DIR set they
# are also written to files there, which is what a scrape reads then.
REGISTRY = CollectorRegistry(auto_describe=True)

# Sockets ----------------------------------------------------------------------------------
OPEN_SOCKETS = Gauge(
    "schoolbell_open_sockets",
    "WebSockets open right now (recipients' tabs and dashboards), summed over this "
    "server's workers.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
DISCONNECTS = Counter(
    "schoolbell_disconnects_total",
    "WebSockets that ended, by why: client_closed (the tab or its network went), no_pong, "
    "outbox_full / send_timeout / replay_backlog (too slow, cut off), socket_error, "
    "shutdown (server restart), closed_by_server (policy: account disabled, flood, ...).",
    ("reason",),
    registry=REGISTRY,
)
SLOW_CLIENTS_CUT_OFF = Counter(
    "schoolbell_slow_clients_cut_off_total",
    "Sockets cut off because they did not keep up (outbox full, a send past its "
    "deadline, or too much held back during replay): the others never waited for them.",
    registry=REGISTRY,
)
REPLAYED_MESSAGES = Counter(
    "schoolbell_replayed_messages_total",
    "Messages sent from the database to (re)connecting tabs: announcements they missed, "
    "and changes to the alerts they still show.",
    registry=REGISTRY,
)

# Announcements ----------------------------------------------------------------------------
ANNOUNCEMENTS_SENT = Counter(
    "schoolbell_announcements_sent_total",
    "Announcements sent (committed and handed to the broker), by priority; scheduled "
    "ones when they go out.",
    ("priority",),
    registry=REGISTRY,
)
FANOUT_SECONDS = Histogram(
    "schoolbell_fanout_duration_seconds",
    "Time from a broadcast's broker event reaching a worker to its announcement being "
    "written (or queued) on every local socket of its recipients; broadcasts with a "
    "recipient's socket on that worker only.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "schoolbell_deliveries_total",
    "Recipients' deliveries that moved forward to a receipt state (result: delivered, "
    "read, acknowledged), by the channel that reported it (tab, push, email).",
    ("channel", "result"),
    registry=REGISTRY,
)
RECEIPTS_WRITTEN = Counter(
    "schoolbell_receipts_written_total",
    "Receipts from open tabs written to the database by the batch writer.",
    registry=REGISTRY,
)
RECEIPT_FLUSH_SECONDS = Histogram(
    "schoolbell_receipt_flush_duration_seconds",
    "Time to write one batch of tabs' receipts (one transaction), successful or not.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)

# Between processes ------------------------------------------------------------------------
BROKER_CONNECTED = Gauge(
    "schoolbell_broker_connected",
    "1 while the broker links every worker of this server to the others (the in-process "
    "broker always); 0 while any worker's Redis pub/sub link is down.",
    multiprocess_mode="livemin",
    registry=REGISTRY,
)
LAST_EVENT_STAMP = "schoolbell_broker_last_event_timestamp_seconds"
BROKER_LAST_EVENT = Gauge(
    LAST_EVENT_STAMP,
    "Unix time of the last message (an event or the link's own probe) that came over "
    "the Redis pub/sub link, of the worker that heard one longest ago.",
    multiprocess_mode="livemin",
    registry=REGISTRY,
)
LAST_EVENT_AGE = "schoolbell_broker_last_event_age_seconds"  # from BROKER_LAST_EVENT

# Pushes and e-mails (background jobs) -----------------------------------------------------
PUSHES = Counter(
    "schoolbell_pushes_total",
    "Web Push jobs that ended, by result: sent (the push service took it), retry (will "
    "try again: 429, 5xx, no answer), failed (refused, or out of attempts), cancelled "
    "(no longer needed, or the device is gone), deferred (quiet hours).",
    ("result",),
    registry=REGISTRY,
)
EMAILS = Counter(
    "schoolbell_emails_total",
    "E-mail jobs that ended, by result: sent (the mail server took it), retry, failed, "
    "cancelled (no longer needed, or no SMTP server), deferred (quiet hours).",
    ("result",),
    registry=REGISTRY,
)
JOB_RESULTS = ("sent", "retry", "failed", "cancelled", "deferred")
# Job kind -> the counter its outcomes go to (services register theirs: count_jobs).
JOB_COUNTERS: dict[str, Counter] = {}

# HTTP -------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "schoolbell_http_requests_total",
    "HTTP requests answered, by route (the URL rule, e.g. /api/v1/notifications/<int:id>; "
    "(unmatched) for no route), method and status. /metrics itself is not counted; "
    "WebSockets are counted by the socket metrics.",
    ("route", "method", "status"),
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "schoolbell_http_request_duration_seconds",
    "Time from a request's start to its response, by route and method (WebSocket "
    "upgrades excluded: they last as long as the socket).",
    ("route", "method"),
    registry=REGISTRY,
)
UNMATCHED = "(unmatched)"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STARTED = "schoolbell.metrics.started"  # environ key: perf_counter() at the request's start


def count_jobs(counter: Counter, *kinds: str) -> None:
    """Count how jobs of these kinds end in `counter` (by result)."""
    for kind in kinds:
        JOB_COUNTERS[kind] = counter


def job_ended(kind: str, result: str) -> None:
    """A job ran: done ("sent"), retry, failed, cancelled or deferred."""
    counter = JOB_COUNTERS.get(kind)
    if counter is not None:
        counter.labels("sent" if result == "done" else result).inc()


# Who may scrape ---------------------------------------------------------------------------
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allowlist(value: str) -> tuple[Network, ...]:
    """'10.0.0.5, 192.168.0.0/24, ::1' -> networks; ValueError names a bad item."""
    networks = []
    for item in value.split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{item.strip()!r} is not an address or a network") from None
    return tuple(networks)


def address_allowed(address: str, allowed: Iterable[Network]) -> bool:
    """Whether a client address is in one of the networks (an IPv4 address seen as
    ::ffff:a.b.c.d counts as a.b.c.d)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # "unknown", or garbage: never allowed
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in allowed)


def enabled(config) -> bool:
    """/metrics is served at all: a token or an allowlist is set."""
    return bool(config["METRICS_TOKEN"] or config["METRICS_ALLOW_NETWORKS"])


def scrape_refusal(config, address: str, authorization: str | None) -> errors.ErrorCode | None:
    """Why this scraper is refused (None: it may read). Each safeguard that is set must
    pass: an address outside SCHOOLBELL_METRICS_ALLOW is refused whatever its token,
    and with SCHOOLBELL_METRICS_TOKEN set a missing or wrong token is refused."""
    allowed = config["METRICS_ALLOW_NETWORKS"]
    if allowed and not address_allowed(address, allowed):
        return errors.METRICS_ADDRESS_FORBIDDEN
    token = config["METRICS_TOKEN"]
    if token:
        scheme, _, given = (authorization or "").partition(" ")
        # Constant time: how much of a guess matched must not show in the answer's timing.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return errors.METRICS_TOKEN_REQUIRED
    return None


# What a scrape reads ----------------------------------------------------------------------
def multiprocess() -> bool:
    """Whether this process's metrics are written to files that every worker's scrape
    reads (prometheus-client chose it from PROMETHEUS_MULTIPROC_DIR when first imported;
    gunicorn_conf.py sets that in the master, before any worker imports it)."""
    return values.ValueClass._multiprocess


class ScrapeCollector:
    """Everything one scrape returns: every worker's metrics (or this process's), the
    broker link's age, and what is the same from any worker (who is online across every
    process, the jobs waiting), computed once by the worker serving the scrape."""

    def __init__(self, app: Flask):
        self.app = app
        if multiprocess():
            from prometheus_client.multiprocess import MultiProcessCollector

            self.source = MultiProcessCollector(None)
        else:
            self.source = REGISTRY

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            if family.name == LAST_EVENT_STAMP:
                yield from last_event_age(family, time.time())
            else:
                yield family
        yield self.online_users()
        waiting = self.jobs_waiting()
        if waiting is not None:
            yield waiting

    def online_users(self) -> Metric:
        live = self.app.extensions["schoolbell.live"]
        return GaugeMetricFamily(
            "schoolbell_online_users",
            "People with at least one tab open, across every process of the school (the "
            "same on every server: take max, not sum).",
            value=live.presence.online_users(),
        )

    def jobs_waiting(self) -> Metric | None:
        from .db import session_scope
        from .services import jobs

        try:
            with session_scope(self.app) as session:
                waiting = jobs.waiting_by_kind(session)
        except Exception:  # the database is away: /healthz says so; the rest still scrapes
            log.exception("counting waiting jobs for /metrics failed")
            return None
        family = GaugeMetricFamily(
            "schoolbell_jobs_waiting",
            "Background jobs due now that no runner has taken yet (pushes, e-mails, "
            "fan-outs, reminders, ...), by kind; the queue is shared, so the same on every "
            "server.",
            labels=("kind",),
        )
        for kind in sorted(set(jobs.HANDLERS) | set(waiting)):
            family.add_metric([kind], waiting.get(kind, 0))
        return family


def last_event_age(family: Metric, now: float) -> Iterator[Metric]:
    """The broker link's last-message time, and its age in seconds; nothing when no
    worker has a Redis link (the in-process broker has none to watch)."""
    stamps = [sample.value for sample in family.samples if sample.value > 0]
    if not stamps:
        return
    yield family
    yield GaugeMetricFamily(
        LAST_EVENT_AGE,
        "Seconds since a message last came over the Redis pub/sub link, of the worker that "
        "heard one longest ago (its probe comes back every BROKER_PROBE_INTERVAL_S when "
        "the link is whole: much more means a deaf worker).",
        value=max(0.0, now - min(stamps)),
    )


def exposition(app: Flask, accept: str | None) -> tuple[bytes, str]:
    """The scrape's body and content type (text format, or OpenMetrics when asked)."""
    encoder, content_type = choose_encoder(accept or "")
    registry = CollectorRegistry()
    registry.register(ScrapeCollector(app))
    return encoder(registry), content_type


# HTTP requests ----------------------------------------------------------------------------
def _request_started(sender: Flask, **extra) -> None:
    request.environ[_STARTED] = time.perf_counter()


def _request_finished(sender: Flask, response, **extra) -> None:
    """Count the request by its route (the rule, never the raw path: bounded values)."""
    if request.blueprint == "monitoring":  # scraping must not change what it reads
        return
    rule = request.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    method = request.method if request.method in METHODS else "other"
    HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
    started = request.environ.get(_STARTED)
    if started is not None and request.headers.get("Upgrade", "").lower() != "websocket":
        HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - started)


def init_app(app: Flask) -> None:
    """Count every request Flask answers (Flask's signals, not before/after_request:
    they also see a request that a before_request hook refused, such as a CSRF failure,
    and never one only rendered by the /ws middleware's refusals). Start the labelled
    counters at 0, so that a first event shows as an increase."""
    from .models import Priority
    from .realtime.hub import ENDINGS

    request_started.connect(_request_started, app)
    request_finished.connect(_request_finished, app)
    for priority in Priority:
        ANNOUNCEMENTS_SENT.labels(priority.value)
    for reason in ENDINGS:
        DISCONNECTS.labels(reason)
    for counter in (PUSHES, EMAILS):
        for result in JOB_RESULTS:
            counter.labels(result)
