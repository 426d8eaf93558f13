"""Child processes of the benchmark: gunicorn servers, the Node load generator, and the
redis-server of the Redis broker's rows.

Each is started pinned to its core (`taskset -c`), and stopped by its PID: first
politely, then with SIGKILL after a deadline. /proc gives the worker's RSS and CPU time.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import resource
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SERVER_CPU = "0"
LOADGEN_CPU = "1"
REDIS_SERVER = "/usr/bin/redis-server"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """Something the run could not do; recorded in the results instead of crashing."""


def raise_fd_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE to `wanted` (the hard limit too, as root may) so N sockets
    fit; children inherit it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        except (ValueError, OSError):
            wanted = hard  # not allowed: use what there is
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int | None:
    """VmRSS of a process in KiB (None if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far, in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is `pid`."""
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    stat = (entry / "stat").read_text()
                    if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                        found.append(int(entry.name))
        return found


def stop_pid(proc: subprocess.Popen, sig: int, timeout_s: float) -> None:
    """Send `sig`, wait up to `timeout_s`, then SIGKILL. Only this process, by PID."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


class Gunicorn:
    """One gunicorn master with one gevent worker, pinned to SERVER_CPU."""

    def __init__(
        self,
        app: str,
        env: dict[str, str],
        port: int,
        log_path: Path,
        worker_connections: int,
        pythonpath: str | None = None,
    ):
        self.app, self.port, self.log_path = app, port, log_path
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, **env, "SCHOOLBELL_WORKER_CONNECTIONS": str(worker_connections)}
        self.worker_connections = worker_connections
        self.pythonpath = pythonpath
        self.proc: subprocess.Popen | None = None
        self.worker_pid: int | None = None

    def command(self) -> list[str]:
        gunicorn = str(ROOT / ".venv" / "bin" / "gunicorn")
        command = [
            "taskset",
            "-c",
            SERVER_CPU,
            gunicorn,
            "-c",
            str(ROOT / "webapp" / "gunicorn_conf.py"),
            "-b",
            f"127.0.0.1:{self.port}",
            "-w",
            "1",
            "--worker-connections",
            str(self.worker_connections),
        ]
        if self.pythonpath:
            command += ["--pythonpath", self.pythonpath]
        return [*command, self.app]

    def start(self, timeout_s: float = 30) -> Gunicorn:
        """Start and wait until /healthz answers and the worker is known."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"gunicorn exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    response.read()
                workers = children_of(self.proc.pid)
                if workers:
                    self.worker_pid = workers[0]
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"gunicorn did not answer within {timeout_s} s; see {self.log_path}")

    def rss_kb(self) -> int | None:
        return rss_kb(self.worker_pid) if self.worker_pid else None

    def cpu_s(self) -> float | None:
        return cpu_seconds(self.worker_pid) if self.worker_pid else None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> float:
        """Stop master (and so worker); SIGKILL both by PID if they outstay the deadline.
        Returns how long the stop took."""
        start = time.monotonic()
        if self.proc is not None:
            stop_pid(self.proc, sig, timeout_s)
        if self.worker_pid and Path(f"/proc/{self.worker_pid}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.worker_pid, signal.SIGKILL)
        return time.monotonic() - start


class RedisServer:
    """A redis-server of the bench's own (never the machine's shared one) on a free port,
    pinned to SERVER_CPU: it is part of the server side, so its work competes with the
    workers', not with the load generator that keeps the clock. Nothing is persisted."""

    def __init__(self, port: int, workdir: Path, log_path: Path):
        self.port, self.workdir, self.log_path = port, workdir, log_path
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            "taskset",
            "-c",
            SERVER_CPU,
            REDIS_SERVER,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--logfile",
            "",  # stdout, into log_path
        ]

    def start(self, timeout_s: float = 10) -> RedisServer:
        """Start and wait until it answers PING."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"redis-server exited with {self.proc.returncode}; see {self.log_path}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return self
            time.sleep(0.05)
        self.stop()
        raise BenchError(f"redis-server did not answer within {timeout_s} s; see {self.log_path}")

    def cpu_s(self) -> float | None:
        # taskset execs redis-server: the same PID
        return cpu_seconds(self.proc.pid) if self.proc else None

    def rss_kb(self) -> int | None:
        return rss_kb(self.proc.pid) if self.proc else None

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc, signal.SIGTERM, 10)


class LineProcess:
    """A child speaking one JSON command per line in, one JSON reply per line out (read
    by a thread, so every wait has a timeout); it exits when its stdin closes."""

    what = "child"

    def __init__(self, command: list[str], cwd: Path, log_path: Path):
        self.command, self.cwd, self.log_path = command, cwd, log_path
        self.proc: subprocess.Popen | None = None
        self.replies: queue.Queue = queue.Queue()

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.replies.put(line)
        self.replies.put(None)  # EOF

    def call(self, cmd: str, timeout_s: float, **fields) -> dict:
        """Send one command and wait for its reply (BenchError on timeout or failure)."""
        if self.proc is None or self.proc.poll() is not None:
            raise BenchError(f"the {self.what} is not running; see {self.log_path}")
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()
        try:
            line = self.replies.get(timeout=timeout_s)
        except queue.Empty:
            raise BenchError(f"{self.what}: no answer to {cmd} within {timeout_s:.0f} s") from None
        if line is None:
            raise BenchError(f"the {self.what} exited during {cmd}; see {self.log_path}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise BenchError(f"{self.what}: {cmd} failed: {reply.get('error')}")
        return reply

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.close()  # it exits when stdin closes
        stop_pid(self.proc, signal.SIGTERM, 10)


class LoadGen(LineProcess):
    """The Node load generator, pinned to LOADGEN_CPU."""

    what = "load generator"

    def __init__(self, log_path: Path, max_s: int = 1800):
        command = [
            "taskset",
            "-c",
            LOADGEN_CPU,
            "node",
            # A larger young generation: fewer scavenges in the middle of a broadcast
            # (each pauses every client's receipt at once).
            "--max-semi-space-size=64",
            str(BENCH / "loadgen.mjs"),
            "--max-s",
            str(max_s),
        ]
        super().__init__(command, BENCH, log_path)


class PushStandIn(LineProcess):
    """bench/push_service.py: the strict stand-in push service, on LOADGEN_CPU at
    SCHED_IDLE (the load generator comes first)."""

    what = "push service"

    def __init__(self, log_path: Path):
        python = str(ROOT / ".venv" / "bin" / "python")
        command = ["taskset", "-c", LOADGEN_CPU, python, str(BENCH / "push_service.py")]
        super().__init__(command, ROOT, log_path)
