"""gunicorn settings for Schoolbell: `gunicorn -c webapp/gunicorn_conf.py wsgi:app`.

Each can be overridden on the command line or through SCHOOLBELL_* variables below.
"""

import glob
import os
import re
import shutil
import tempfile

import gevent
from gunicorn.glogging import Logger

bind = os.environ.get("SCHOOLBELL_BIND", "127.0.0.1:8000")
worker_class = "gevent"
# One worker holds thousands of sockets; add workers (and the Redis broker) to scale out.
workers = int(os.environ.get("SCHOOLBELL_WORKERS", "1"))
# gevent accepts only this many connections at once, sockets included: keep it well above
# the expected number of open tabs (the app caps WebSockets below it, so pages still load).
worker_connections = int(os.environ.get("SCHOOLBELL_WORKER_CONNECTIONS", "20000"))
# On SIGTERM, give open requests this long; the app closes sockets with 1001 right away.
graceful_timeout = 10
timeout = 30
keepalive = 5
# gunicorn 27 otherwise creates ~/.gunicorn/gunicorn.ctl, shared by every instance.
control_socket_disable = True
accesslog = os.environ.get("SCHOOLBELL_ACCESS_LOG", "-")
# No query string in access logs: old clients may still send ?token=<JWT>.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(D)sus "%(a)s"'
# Signed links from e-mails carry their token in the path: log /l/open/*** instead.
# (webapp/logs.py has the same pattern for the app's log; it is not imported from there
# because importing the webapp package loads Flask, and with it ssl, in the master before
# gevent patches the workers.)
SIGNED_LINK_PATH = re.compile(r"(/l/(?:open|confirm)/)[^\s/?]+")


class AccessLogger(Logger):
    """gunicorn's logger, with the tokens of signed links' paths masked (in the path
    and in the request line, should the format above ever use %(r)s)."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name in ("U", "r"):
            if atoms.get(name):
                atoms[name] = SIGNED_LINK_PATH.sub(r"\1***", atoms[name])
        return atoms


logger_class = AccessLogger
errorlog = "-"
loglevel = os.environ.get("SCHOOLBELL_LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("SCHOOLBELL_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# gevent otherwise records where each greenlet was spawned: about 14 objects per
# greenlet, two greenlets per socket, for a debugging aid we do not use.
gevent.config.track_greenlet_tree = False


def on_starting(server):
    """Several workers need a broker between them: with the in-process one, each
    worker's tabs would only get what that worker sent (the others on reconnect).
    And, with /metrics on, a directory where each worker writes its metrics."""
    broker = os.environ.get("SCHOOLBELL_BROKER_URL", "memory://") or "memory://"
    if server.cfg.workers > 1 and broker == "memory://":
        raise SystemExit(
            f"Schoolbell: {server.cfg.workers} workers need a shared broker: set "
            "SCHOOLBELL_BROKER_URL=redis://host:6379/0 (README: Scaling out), or run one worker."
        )
    directory = metrics_directory(server.cfg.workers)
    if directory:
        server.log.info("Prometheus metrics of every worker are kept in %s", directory)


# Prometheus metrics with several workers (webapp/metrics.py): each worker writes its
# metrics to files in PROMETHEUS_MULTIPROC_DIR, and a scrape, whichever worker answers
# it, reads every worker's. The variable is set here, in the master, so that every
# worker has it before it first imports prometheus_client (which decides then). The
# directory is new for every start: numbers of a previous run, or of a previous server
# whose pids are reused, must not be added in.
METRICS_DIRECTORY_OWNED = "SCHOOLBELL_METRICS_DIRECTORY_OWNED"


def metrics_enabled() -> bool:
    """/metrics is on (webapp/config.py: a token or an allowlist is set)."""
    return any(
        os.environ.get(f"SCHOOLBELL_METRICS_{name}", "").strip() for name in ("TOKEN", "ALLOW")
    )


def metrics_directory(workers: int) -> str | None:
    """Give the workers a fresh PROMETHEUS_MULTIPROC_DIR (one of the operator's own is
    emptied); None when there is a single worker or no /metrics."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        os.makedirs(given, exist_ok=True)
        for path in glob.glob(os.path.join(given, "*.db")):
            os.remove(path)
        return given
    if workers <= 1 or not metrics_enabled():
        return None  # one worker keeps its metrics in memory: no file writes at all
    path = tempfile.mkdtemp(prefix="schoolbell-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.environ[METRICS_DIRECTORY_OWNED] = path
    return path


# prometheus_client.multiprocess.mark_process_dead, which is not imported here: loading
# prometheus_client in the master would bind its locks to the unpatched threading
# module for every worker forked later. tests/test_metrics.py checks that these are the
# library's own "live" gauge modes.
LIVE_GAUGE_MODES = ("liveall", "livesum", "livemax", "livemin", "livemostrecent")


def mark_process_dead(pid: int) -> None:
    """A worker exited: its open sockets and broker link no longer count (the "live"
    gauges); its counters stay, so totals never go backwards."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    for mode in LIVE_GAUGE_MODES:
        for name in glob.glob(os.path.join(path, f"gauge_{mode}_{pid}.db")):
            os.remove(name)


def child_exit(server, worker):
    """In the master, after a worker exited (or was killed)."""
    mark_process_dead(worker.pid)


def on_exit(server):
    """The server stops: remove the metrics directory it made."""
    path = os.environ.get(METRICS_DIRECTORY_OWNED)
    if path and path == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(path, ignore_errors=True)


def post_worker_init(worker):
    """Tune garbage collection for long-lived sockets (realtime/heap.py). On SIGTERM,
    close every socket with 1001 at once (clients reconnect elsewhere or after the
    restart) instead of holding them until the graceful timeout ends in 1006."""
    import signal

    live = getattr(worker.wsgi, "extensions", {}).get("schoolbell.live")
    if live is not None:
        live.serve()
    stop_accepting = worker.handle_exit

    def handle_exit(sig, frame):
        if live is not None:
            gevent.spawn(live.shutdown)
        stop_accepting(sig, frame)

    signal.signal(signal.SIGTERM, handle_exit)
