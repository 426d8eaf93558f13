"""`make bench`: Schoolbell against the naive send loop and Flask-SocketIO, side by side.

For each N (default 1,000, 5,000 and 10,000) and each server in turn: start it under
gunicorn with one gevent worker pinned to CPU 0, open N WebSocket clients from one Node
process pinned to CPU 1, and measure the time to connect them all, several broadcasts
(latency from the send request to every client's receipt, and the count received), the
worker's RSS and CPU time. For Schoolbell also: receipts, /healthz and the compose
preview during a broadcast, and reconnecting after a restart. Two more Schoolbell rows
take the main measurements only: `schoolbell-redis` (the Redis broker, its own
redis-server on CPU 0) and `schoolbell-2proc` (two processes, N/2 clients each, one
Redis broker between them; sends go through the first).

    .venv/bin/python bench/run.py [--n 1000,5000] [--broadcasts 5] [--quick]
                                  [--servers schoolbell,naive-plain] [--no-reconnect]

Environment: BENCH_N, BENCH_BROADCASTS (the same as --n, --broadcasts); BENCH_BROKER_URL
replaces the redis:// URL the Redis rows' servers get (memory:// checks the harness without
the Redis broker; the report says so). Loopback only; every child process is stopped by
PID when its scenario ends, whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report
import school as schoolbell
from processes import (
    BENCH,
    LOADGEN_CPU,
    REDIS_SERVER,
    ROOT,
    BenchError,
    Gunicorn,
    LoadGen,
    PushStandIn,
    RedisServer,
    free_port,
    raise_fd_limit,
    stop_pid,
)

SERVERS = (
    "schoolbell",
    "schoolbell-redis",
    "schoolbell-2proc",
    "naive-plain",
    "naive-deflate",
    "socketio",
)
BODY_HTML = (
    "<p>Fire drill at <strong>10:00</strong>: leave by the nearest exit and meet your "
    "class in the yard.</p>"
)
BROADCAST_GAP_S = 1.0
HEALTHZ_SAMPLES = 50
MAX_PROBE_BROADCASTS = 8
SIGNIN_LEAD_MS = 150  # the storm's sign-ins are being hashed when the broadcast starts
STUDENTS = {"roles": ["student"]}  # the push phase's broadcasts: the open tabs only
GUARDIANS = {"roles": ["guardian"]}  # its pushes: the devices, none with a tab
BROADCASTS_DURING_PUSHES = 3
PUSHES_TIMEOUT_S = 600


@dataclass
class Options:
    ns: list[int]
    broadcasts: int
    servers: list[str]
    reconnect: bool
    pushes: bool
    concurrency: int
    profile: set[str] = field(default_factory=set)
    out: Path = BENCH / "results"


@dataclass(frozen=True)
class Usage:
    """The workers' resident memory and CPU time at one moment (each process's, in the
    order started), and the redis-server's CPU time when there is one."""

    rss_kb_each: tuple[int, ...]
    cpu_s_each: tuple[float, ...]
    redis_cpu_s: float | None = None

    @property
    def rss_kb(self) -> int:
        return sum(self.rss_kb_each)

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu_s_each)

    @classmethod
    def of(cls, servers: list[Gunicorn], redis: RedisServer | None = None) -> Usage:
        rss, cpu = [s.rss_kb() for s in servers], [s.cpu_s() for s in servers]
        if None in rss or None in cpu:
            raise BenchError("a server's worker is gone")
        redis_cpu = redis.cpu_s() if redis is not None else None
        if redis is not None and redis_cpu is None:
            raise BenchError("the redis-server is gone")
        return cls(tuple(rss), tuple(cpu), redis_cpu)


@dataclass(frozen=True)
class ServerKind:
    """How to start one of the compared servers, and how its clients talk to it."""

    app: str
    client: str  # the load generator's client kind: schoolbell, naive or socketio
    env: dict
    pythonpath: str | None = None
    redis: bool = False  # a redis-server of its own, as SCHOOLBELL_BROKER_URL
    processes: int = 1  # gunicorn servers of one worker each; sends go to the first


KINDS = {
    "schoolbell": ServerKind("wsgi:app", "schoolbell", {}),
    "schoolbell-redis": ServerKind("wsgi:app", "schoolbell", {}, redis=True),
    # Two servers on one SQLite file: only the first one writes deliveries (every send
    # goes through it); the second one's writes are its clients' hellos and resumes.
    "schoolbell-2proc": ServerKind("wsgi:app", "schoolbell", {}, redis=True, processes=2),
    "naive-plain": ServerKind("naive_server:app", "naive", {"BENCH_NAIVE_MODE": "plain"}, "bench"),
    "naive-deflate": ServerKind(
        "naive_server:app", "naive", {"BENCH_NAIVE_MODE": "deflate"}, "bench"
    ),
    "socketio": ServerKind("socketio_server:app", "socketio", {}, "bench"),
}


# Timing helpers ------------------------------------------------------------------------
def connect_timeout_s(n: int) -> float:
    return max(60.0, n * 0.02)


def wait_idle(servers: Gunicorn | list[Gunicorn], timeout_s: float = 15.0) -> float:
    """Wait until the workers use (almost) no CPU: less than 20 ms over 0.5 s between
    them. Returns how long that took (so measurements start from a quiet server)."""
    servers = servers if isinstance(servers, list) else [servers]

    def used() -> float | None:
        each = [s.cpu_s() for s in servers]
        return None if None in each else sum(each)

    start = time.monotonic()
    before = used()
    while time.monotonic() - start < timeout_s:
        time.sleep(0.5)
        now = used()
        if before is None or now is None or now - before < 0.02:
            break
        before = now
    return time.monotonic() - start


def logged_write_ms(server: Gunicorn, notification_id: int) -> float | None:
    """How long Schoolbell's hub took to write a notification to every socket, as its
    log says: the server's own fan-out time, whatever the load generator's pace."""
    pattern = re.compile(
        rf"notification {notification_id}: written to \d+ sockets here in ([\d.]+) ms"
    )
    for _ in range(20):
        found = pattern.findall(server.log_path.read_text(errors="replace"))
        if found:
            return float(found[-1])
        time.sleep(0.05)
    return None


# Broadcast requests -------------------------------------------------------------------
def payload(seq: int) -> dict:
    """What the naive and Socket.IO servers send: the shape and size of a Schoolbell
    `notification` message."""
    return {
        "type": "notification",
        "seq": seq,
        "id": seq,
        "title": f"bench #{seq}",
        "body_html": BODY_HTML,
        "priority": "normal",
        "require_ack": False,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "expires_at": None,
        "link": None,
        "author": "Bench Admin",
    }


def send_request(
    kind: ServerKind, base_url: str, seq: int, school, targets: dict | None = None
) -> dict:
    """The HTTP request that makes this server broadcast message `seq` (Schoolbell:
    to everyone, or to `targets`)."""
    if kind.client == "schoolbell":
        return schoolbell.send_request(base_url, school, seq, targets)
    return {
        "method": "POST",
        "url": base_url + "/broadcast",
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(payload(seq)),
    }


def ws_url(kind: ServerKind, base_url: str) -> str:
    if kind.client == "socketio":
        return base_url  # socket.io-client adds /socket.io/?EIO=4&transport=websocket
    return base_url.replace("http://", "ws://") + "/ws"


# One scenario: one server, one N ------------------------------------------------------
class Scenario:
    """Start one server, hold N clients against it, measure, and stop everything."""

    def __init__(self, name: str, n: int, options: Options, logdir: Path):
        self.name, self.n, self.options = name, n, options
        self.kind = KINDS[name]
        self.logdir = logdir
        self.result: dict = {"server": name, "n": n, "error": None}
        self.servers: list[Gunicorn] = []  # every one started, restarts included
        self.redis: RedisServer | None = None
        self.loadgen: LoadGen | None = None
        self.push_service: PushStandIn | None = None
        self.school = None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-{n}-"))

    def log_path(self, what: str) -> Path:
        return self.logdir / f"{self.name}-{self.n}-{what}.log"

    @property
    def push_file(self) -> Path:
        """The push phase's devices: the stand-in's browsers' subscriptions."""
        return self.workdir / "subscriptions.json"

    def run(self) -> dict:
        """Measure; on failure record the error (the run goes on with the next one)."""
        started = time.monotonic()
        self.result["load_average"] = os.getloadavg()
        try:
            self.measure()
        except Exception as exc:
            self.fail(f"{type(exc).__name__}: {exc}")
            with open(self.log_path("orchestrator"), "a") as fh:
                traceback.print_exc(file=fh)
        finally:
            self.cleanup()
            self.result["duration_s"] = round(time.monotonic() - started, 1)
        return self.result

    def fail(self, error: str) -> None:
        """Record an error after any earlier one (e.g. refused connections, then this)."""
        earlier = self.result["error"]
        self.result["error"] = f"{earlier}; then {error}" if earlier else error

    def start_server(self, port: int, log: str = "server") -> Gunicorn:
        env = {**self.kind.env}
        if self.school is not None:
            env.update(self.school.server_env(self.n))
        if self.redis is not None:
            env["SCHOOLBELL_BROKER_URL"] = broker_url(self.redis)
        server = Gunicorn(
            self.kind.app,
            env,
            port,
            self.log_path(log),
            worker_connections=self.n + 2000,
            pythonpath=self.kind.pythonpath,
        )
        self.servers.append(server)
        return server.start()

    def measure(self) -> None:
        """Connect N, broadcast, and sample the workers' RSS and CPU around each phase."""
        if self.kind.client == "schoolbell":
            step = time.monotonic()
            self.school = schoolbell.build(self.workdir, self.n)
            if self.name == "schoolbell" and self.options.pushes:
                self.push_service = PushStandIn(self.log_path("push-service")).start()
                reply = self.push_service.call(
                    "browsers", timeout_s=120, n=self.n, file=str(self.push_file)
                )
                self.school.push_origin = reply["origin"]
            self.result["setup_s"] = round(time.monotonic() - step, 1)
        if self.kind.redis:
            self.redis = RedisServer(free_port(), self.workdir, self.log_path("redis")).start()
            self.result["broker_url"] = broker_url(self.redis)
        labels = ["server"] if self.kind.processes == 1 else ["server-a", "server-b"]
        fleet = [self.start_server(free_port(), log) for log in labels]
        server = fleet[0]  # where sends go
        self.loadgen = LoadGen(self.log_path("loadgen"), max_s=900).start()
        wait_idle(fleet)
        before = Usage.of(fleet, self.redis)
        with self.profiling(fleet, "connect"):
            self.result["connect"] = connect = self.connect(fleet)
        if connect["failed"]:  # the server could not hold N: say so, measure the rest
            self.fail(f"connected {connect['ready']}/{self.n}: {connect['errors']}")
        wait_idle(fleet)
        time.sleep(0.5)
        connected = Usage.of(fleet, self.redis)
        with self.profiling(fleet, "broadcasts"):
            self.main_broadcasts(server, fleet)
        wait_idle(fleet)
        after = Usage.of(fleet, self.redis)
        ready = connect["ready"] or 1
        self.result["memory"] = {
            "rss_before_connect_kb": before.rss_kb,
            "rss_connected_kb": connected.rss_kb,
            "rss_after_broadcasts_kb": after.rss_kb,
            "kb_per_conn_connected": round((connected.rss_kb - before.rss_kb) / ready, 2),
            "kb_per_conn_after_broadcasts": round((after.rss_kb - before.rss_kb) / ready, 2),
        }
        self.result["cpu"] = _phases(before.cpu_s, connected.cpu_s, after.cpu_s)
        if len(fleet) > 1:
            self.result["processes"] = [
                {
                    "url": s.url,
                    "rss_connected_kb": connected.rss_kb_each[i],
                    "cpu": _phases(
                        before.cpu_s_each[i], connected.cpu_s_each[i], after.cpu_s_each[i]
                    ),
                }
                for i, s in enumerate(fleet)
            ]
        if self.redis is not None:
            self.result["redis_cpu"] = _phases(
                before.redis_cpu_s, connected.redis_cpu_s, after.redis_cpu_s
            )
            self.result["redis_rss_kb"] = self.redis.rss_kb()
        if self.name == "schoolbell":
            self.schoolbell_extras(server)

    def main_broadcasts(self, server: Gunicorn, fleet: list[Gunicorn]) -> None:
        """--broadcasts broadcasts through `server`, kept as they come (should one fail).
        Stops early when one process's clients got none of one: e.g. a broker that does
        not reach the other process (each further one would wait its full minute)."""
        casts = self.result["broadcasts"] = []
        for seq in range(1, self.options.broadcasts + 1):
            casts.append(self.broadcast(server, seq, fleet=fleet))
            by_url = casts[-1].get("by_url") or []
            silent = [
                f"{g['url']} ({g['expected']})"
                for g in by_url
                if g["expected"] and not g["received"]
            ]
            if silent:
                self.fail(
                    f"broadcast {seq}: none of the clients of {', '.join(silent)} received it;"
                    " no more broadcasts"
                )
                return

    def connect(self, fleet: list[Gunicorn]) -> dict:
        """Open N clients (at most --concurrency handshakes at once) until all are ready;
        with several processes, client i connects to process i % processes."""
        return self.loadgen.call(
            "connect",
            timeout_s=connect_timeout_s(self.n) + 10,
            wait_s=connect_timeout_s(self.n),
            kind=self.kind.client,
            urls=[ws_url(self.kind, s.url) for s in fleet],
            n=self.n,
            concurrency=self.options.concurrency,
            tokens_file=str(self.school.tokens_file) if self.school else None,
        )

    def broadcast(
        self,
        server: Gunicorn,
        seq: int,
        probes: list | None = None,
        burst: list | None = None,
        targets: dict | None = None,
        fleet: list[Gunicorn] | None = None,
    ) -> dict:
        """One broadcast sent through `server`, timed by the load generator from the send
        request's start (with `burst`: those requests fired at once just before it;
        `targets`: to whom, when not everyone; `fleet`: every process holding clients,
        whose write times are read, when not just `server`)."""
        time.sleep(BROADCAST_GAP_S)
        reply = self.loadgen.call(
            "broadcast",
            timeout_s=75,
            wait_s=60,
            seq=seq,
            request=send_request(self.kind, server.url, seq, self.school, targets),
            probes=probes or [],
            burst=burst or [],
            burst_lead_ms=SIGNIN_LEAD_MS,
        )
        if reply["status"] not in (200, 201):
            raise BenchError(f"broadcast {seq}: HTTP {reply['status']} {reply['response']}")
        # The server's own time to write the message to every socket, whatever the load
        # generator's pace: Schoolbell's hub logs it, the naive loop returns it. With two
        # processes: the slower one's (each writes to its own half).
        if self.kind.client == "schoolbell":
            each = [logged_write_ms(s, reply["response"]["id"]) for s in fleet or [server]]
            known = [ms for ms in each if ms is not None]
            reply["write_ms"] = max(known) if known else None
            if len(each) > 1:
                reply["write_ms_each"] = each
        elif isinstance(reply["response"], dict):
            reply["write_ms"] = reply["response"].get("loop_ms")
        return reply

    # Schoolbell only ------------------------------------------------------------------
    def schoolbell_extras(self, server: Gunicorn) -> None:
        extra = self.result["schoolbell"] = {}
        extra["probes"] = self.probe_during_broadcasts(server)
        seq = max(b["seq"] for b in [*self.result["broadcasts"], *extra["probes"]["broadcasts"]])
        extra["signin_storm"] = self.signin_storm(server, seq + 1)
        last_id = self.result["broadcasts"][-1]["response"]["id"]
        extra["receipts"] = self.receipts(server, [last_id])
        others = [b["response"]["id"] for b in self.result["broadcasts"][:-1]]
        others += [b["response"]["id"] for b in extra["probes"]["broadcasts"]]
        others += [extra["signin_storm"][k]["response"]["id"] for k in ("quiet", "storm")]
        # Every other announcement acknowledged too, as browsers do, so that a restart
        # replays only what was sent while the server was down.
        extra["other_receipts"] = self.receipts(server, others) if others else None
        if self.options.reconnect:
            extra["reconnect"] = self.restart_and_catch_up(server)
        else:
            extra["reconnect"] = None
        if self.push_service is not None:
            seq = max(extra["signin_storm"]["storm"]["seq"], seq) + 1
            with self.profiling(self.servers[-1], "pushes"):
                extra["pushes"] = self.pushes_during_broadcasts(self.servers[-1], seq)

    def pushes_during_broadcasts(self, server: Gunicorn, seq: int) -> dict:
        """N guardians with one device each and no tab; one announcement to them all.
        While their pushes go out (each encrypted for its device, VAPID-signed, posted
        to the stand-in, which decrypts and checks it), broadcasts to the students' open
        tabs on the same worker, against as many just before."""
        devices = schoolbell.add_devices(self.school, json.loads(self.push_file.read_text()))
        quiet = [  # the baseline: as many quiet broadcasts as there are loaded ones
            self.broadcast(server, seq + n, targets=STUDENTS)
            for n in range(BROADCASTS_DURING_PUSHES)
        ]
        seq += BROADCASTS_DURING_PUSHES - 1
        cpu_before = server.cpu_s()
        status, body = schoolbell.api_call(
            server.url,
            self.school,
            "POST",
            "/api/v1/notifications",
            {"title": "bench push", "body": schoolbell.BODY, "targets": GUARDIANS},
        )
        if status != 201:
            raise BenchError(f"the push announcement: HTTP {status} {body}")
        sent_at = time.time()
        due_at = sent_at + self.school.app.config["PUSH_AFTER_S"]
        stats = self._push_stats_once(lambda st: st["accepted"] >= max(50, devices // 50), 60)
        during = []
        for n in range(BROADCASTS_DURING_PUSHES):
            before = self.push_service.call("stats", timeout_s=30)["accepted"]
            reply = self.broadcast(server, seq + 1 + n, targets=STUDENTS)
            reply["pushes_before"] = before
            reply["pushes_after"] = self.push_service.call("stats", timeout_s=30)["accepted"]
            during.append(reply)
        stats = self._push_stats_once(
            lambda st: st["accepted"] + st["refused"] >= devices or st["errors"], PUSHES_TIMEOUT_S
        )
        cpu_pushes = server.cpu_s() - cpu_before
        after = self.broadcast(server, seq + 1 + BROADCASTS_DURING_PUSHES, targets=STUDENTS)
        return {
            "devices": devices,
            "stand_in": stats,
            "jobs": schoolbell.push_jobs(self.school, body["id"]),
            "push_after_s": self.school.app.config["PUSH_AFTER_S"],
            "first_push_s": stats["first_at"] - due_at if stats["first_at"] else None,
            "all_pushed_s": stats["last_at"] - due_at if stats["last_at"] else None,
            "worker_cpu_s": round(cpu_pushes, 2),
            "quiet": quiet,
            "during": during,
            "quiet_after": after,
        }

    def _push_stats_once(self, done, timeout_s: float) -> dict:
        """Poll the stand-in every 0.5 s until `done(stats)`; BenchError past the time."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.push_service.call("stats", timeout_s=30)
            if done(stats):
                return stats
            if time.monotonic() > deadline:
                raise BenchError(f"pushes: not done within {timeout_s} s: {stats}")
            time.sleep(0.5)

    def probe_during_broadcasts(self, server: Gunicorn) -> dict:
        """Extra broadcasts with /healthz and the compose preview requested while each is
        in flight, until HEALTHZ_SAMPLES are taken. A broadcast that does not reach every
        client while they run is recorded as stalled."""
        cookie, csrf = schoolbell.sign_in(server.url, self.school.admin_password)
        probes = [
            # a monitor or load balancer: every 10 ms, at most 5 at once
            {"name": "healthz", "method": "GET", "url": server.url + "/healthz"}
            | {"interval_ms": 10, "max_in_flight": 5, "max_s": 10},
            # a person typing in the compose form: one preview at a time
            schoolbell.preview_probe(server.url, cookie, csrf)
            | {"interval_ms": 25, "max_in_flight": 1, "max_s": 10},
        ]
        casts, samples = [], {"healthz": [], "preview": []}
        seq = self.options.broadcasts
        while len(samples["healthz"]) < HEALTHZ_SAMPLES and len(casts) < MAX_PROBE_BROADCASTS:
            seq += 1
            reply = self.broadcast(server, seq, probes)
            casts.append(reply)
            for name in samples:
                samples[name] += reply["probes"][name]["latencies"]
                if reply["probes"][name]["bad"]:
                    raise BenchError(f"{name} probe failed: {reply['probes'][name]['bad']}")
            if reply["received"] < reply["expected"]:
                break  # stalled: recorded below; more of the same would only cost time
        stalled = [c["seq"] for c in casts if c["received"] < c["expected"]]
        return {name: _stats(values) for name, values in samples.items()} | {
            "broadcasts": casts,
            "stalled": stalled,
        }

    def signin_storm(self, server: Gunicorn, seq: int) -> dict:
        """A quiet broadcast, then STAFF sign-ins at once with a broadcast sent while
        they are being checked and /healthz polled until the last is answered."""
        quiet = self.broadcast(server, seq)
        forms = schoolbell.signin_storm(server.url, self.school)
        healthz = {"name": "healthz", "method": "GET", "url": server.url + "/healthz"}
        healthz |= {"interval_ms": 10, "max_in_flight": 5, "max_s": 60}
        wait_idle(server)
        with self.profiling(server, "storm"):
            storm = self.broadcast(server, seq + 1, [healthz], burst=forms)
        return {
            "quiet": quiet,
            "storm": storm,
            "healthz": _stats(storm["probes"]["healthz"]["latencies"]),
            "healthz_bad": storm["probes"]["healthz"]["bad"],
        }

    def receipts(self, server: Gunicorn, ids: list[int]) -> dict:
        """All clients ack `delivered` for `ids` at once; poll the API every 50 ms until
        each shows N delivered."""
        reply = self.loadgen.call(
            "ack",
            timeout_s=70,
            wait_s=60,
            ids=ids,
            state="delivered",
            expect=self.n,
            interval_ms=50,
            poll_url=server.url + "/api/v1/notifications/{id}",
            headers=self.school.api_headers(),
        )
        first = reply["results"][str(ids[0])]
        return {
            "acks": reply["acks_sent"],
            "recorded_ms": first["recorded_ms"],
            "all_ok": all(r["ok"] for r in reply["results"].values()),
            "raw": reply,
        }

    def restart_and_catch_up(self, server: Gunicorn) -> dict:
        """SIGTERM the server (sockets close with 1001), send an announcement while it is
        down, start it again on the same port, and wait for every client to reconnect
        (with the browser client's jitter and backoff) and get it by replay."""
        self.loadgen.call("arm_reconnect", timeout_s=10)
        stop_s = server.stop(signal.SIGTERM, timeout_s=30)
        notification_id = schoolbell.send_while_down(self.school)
        step = time.monotonic()
        port = int(server.url.rsplit(":", 1)[1])
        restarted = self.start_server(port)
        boot_s = time.monotonic() - step
        with self.profiling(restarted, "restart"):
            reply = self.loadgen.call(
                "await_catchup", timeout_s=130, wait_s=120, id=notification_id
            )
        reply["stop_s"], reply["boot_s"] = round(stop_s, 2), round(boot_s, 2)
        reply["worker_cpu_s"] = restarted.cpu_s()
        reply["worker_rss_kb"] = restarted.rss_kb()
        return reply

    # Profiling (optional) -------------------------------------------------------------
    @contextlib.contextmanager
    def profiling(self, servers: Gunicorn | list[Gunicorn], phase: str):
        """py-spy on the worker(s) during a phase, when asked for (--profile NAME): a
        flame graph (or BENCH_PYSPY_FORMAT=raw|speedscope) in the logs folder, one per
        process (-a, -b with two)."""
        py_spy = ROOT / ".venv" / "bin" / "py-spy"
        if self.name not in self.options.profile or not py_spy.exists():
            yield
            return
        servers = servers if isinstance(servers, list) else [servers]
        fmt = os.environ.get("BENCH_PYSPY_FORMAT", "flamegraph")
        suffix = {"flamegraph": "svg", "raw": "folded", "speedscope": "json"}.get(fmt, fmt)
        profilers = []
        for i, server in enumerate(servers):
            which = f"-{'ab'[i]}" if len(servers) > 1 else ""
            out = self.logdir / f"{self.name}-{self.n}-{phase}{which}.{suffix}"
            command = ["taskset", "-c", LOADGEN_CPU, str(py_spy), "record", "--nonblocking"]
            command += ["-r", "200", "-f", fmt, "-o", str(out), "-p", str(server.worker_pid)]
            with open(self.log_path("py-spy"), "ab") as log:
                profilers.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log))
        try:
            yield
        finally:
            for profiler in profilers:
                stop_pid(profiler, signal.SIGINT, 30)  # py-spy writes its output on SIGINT

    def cleanup(self) -> None:
        """Stop servers, clients, the load generator and redis-server (by PID), remove
        the database."""
        # Servers first: the server side then closes, and holds the TIME_WAIT states, so
        # the next scenario's clients find free ephemeral ports.
        for server in self.servers:
            server.stop(signal.SIGQUIT, timeout_s=20)
        if self.loadgen is not None:
            with contextlib.suppress(Exception):
                self.loadgen.call("close", timeout_s=30)
            self.loadgen.stop()
        if self.push_service is not None:
            self.push_service.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.school is not None:
            with contextlib.suppress(Exception):
                self.school.app.extensions["schoolbell.db"].kw["bind"].dispose()
        shutil.rmtree(self.workdir, ignore_errors=True)


def broker_url(redis: RedisServer) -> str:
    """The Redis rows' SCHOOLBELL_BROKER_URL: this redis-server's, unless BENCH_BROKER_URL
    replaces it (memory:// checks the harness without the Redis broker)."""
    return os.environ.get("BENCH_BROKER_URL") or redis.url


def _phases(before: float, connected: float, after: float) -> dict:
    """CPU seconds while connecting, while broadcasting, and both."""
    return {
        "connect_s": round(connected - before, 2),
        "broadcasts_s": round(after - connected, 2),
        "total_s": round(after - before, 2),
    }


def _stats(values: list[float]) -> dict:
    """count, p50, p99 and max (nearest rank) of latencies in ms."""
    if not values:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]

    return {"count": len(ordered), "p50_ms": rank(0.5), "p99_ms": rank(0.99), "max_ms": ordered[-1]}


# Command line -------------------------------------------------------------------------
def parse_options(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n",
        default=os.environ.get("BENCH_N") or "1000,5000,10000",
        help="client counts, comma-separated (env BENCH_N)",
    )
    parser.add_argument(
        "--broadcasts",
        type=int,
        default=int(os.environ.get("BENCH_BROADCASTS") or 5),
        help="measured broadcasts per server and N (env BENCH_BROADCASTS)",
    )
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help=f"which of {', '.join(SERVERS)}"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: N=500, 2 broadcasts, no restart"
    )
    parser.add_argument("--no-reconnect", action="store_true", help="skip the restart test")
    parser.add_argument(
        "--no-pushes", action="store_true", help="skip the Web Push phase (Schoolbell)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=100, help="handshakes in flight while connecting"
    )
    parser.add_argument(
        "--profile",
        default="",
        help="servers to profile with py-spy while connecting and broadcasting",
    )
    args = parser.parse_args(argv)
    ns = [int(x.replace("_", "")) for x in str(args.n).replace(" ", ",").split(",") if x.strip()]
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    options = Options(
        ns=ns,
        broadcasts=args.broadcasts,
        servers=servers,
        reconnect=not args.no_reconnect,
        pushes=not args.no_pushes,
        concurrency=args.concurrency,
        profile={s for s in args.profile.split(",") if s},
    )
    if args.quick:
        options.ns, options.broadcasts, options.reconnect = [500], 2, False
    return options


def check_tools(options: Options) -> None:
    """Fail early, with the fix, when something the run needs is missing."""
    if not (BENCH / "node_modules" / "ws").exists():
        raise SystemExit("bench/node_modules is missing: run `make bench` (npm ci in bench/).")
    for tool in ("node", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed and not on PATH.")
    with_redis = [name for name in options.servers if KINDS[name].redis]
    if with_redis and not Path(REDIS_SERVER).exists():
        raise SystemExit(
            f"{REDIS_SERVER} is needed for {', '.join(with_redis)} (apt-get install"
            " redis-server), or leave them out with --servers."
        )
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 CPUs: server and load generator share a core", file=sys.stderr)


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    # On SIGTERM too, unwind through every `finally`, so no child outlives the run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    check_tools(options)
    fd_limit = raise_fd_limit(max(65536, 2 * max(options.ns) + 4096))
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {int(LOADGEN_CPU)})  # keep the server's core for the server
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = options.out / f"{stamp}-logs"
    logdir.mkdir(parents=True, exist_ok=True)
    json_path = options.out / f"{stamp}.json"
    results = {
        "started": dt.datetime.now(dt.UTC).isoformat(),
        "settings": {
            "n": options.ns,
            "broadcasts": options.broadcasts,
            "servers": options.servers,
            "reconnect": options.reconnect,
            "pushes": options.pushes,
            "concurrency": options.concurrency,
            "fd_limit": fd_limit,
            "broker_url_override": os.environ.get("BENCH_BROKER_URL") or None,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "node": subprocess.run(
                ["node", "--version"], capture_output=True, text=True
            ).stdout.strip(),
        },
        "runs": [],
    }
    print(
        f"bench: N={options.ns}, {options.broadcasts} broadcasts, servers "
        f"{', '.join(options.servers)}; logs in {logdir.relative_to(ROOT)}",
        flush=True,
    )
    try:
        for n in options.ns:
            for name in options.servers:
                print(f"  {name} N={n:,} ...", end=" ", flush=True)
                result = Scenario(name, n, options, logdir).run()
                results["runs"].append(result)
                report.write_json(results, json_path)
                print(
                    f"{result['duration_s']} s"
                    + (f"  FAILED: {result['error']}" if result["error"] else ""),
                    flush=True,
                )
    except KeyboardInterrupt:
        print("\ninterrupted: reporting what was measured", file=sys.stderr)
    finally:
        results["finished"] = dt.datetime.now(dt.UTC).isoformat()
        report.write_json(results, json_path)
        print()
        print(report.render(results))
        print(f"\nraw numbers: {json_path.relative_to(ROOT)}")
    return 0 if all(not r["error"] for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
