"""A real Redis for tests: /usr/bin/redis-server on 127.0.0.1 and a free port, with no
persistence, started and stopped by PID. Never the shared Redis on 6379.

    server = RedisServer(tmp_path / "redis").start()   # or the `redis_server` fixture
    app = make_test_app(..., RATELIMIT_STORAGE_URL=server.url)  # redis://127.0.0.1:<port>/0
    server.kill()        # SIGKILL: gone at once, like a crash
    server.restart()     # up again on the SAME port (empty: nothing is persisted)
    server.pause()       # SIGSTOP: connections stay open, nothing answers (a hung Redis)
    server.resume()      # SIGCONT
    server.stop()        # SIGTERM, and wait

A half-open link (the network, not Redis, goes silent) is tests/tcp_proxy.py's job.
When redis-server is missing, start() fails the test under CI=true and skips it elsewhere.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from .databases import require_service
from .server import free_port

REDIS_SERVER = os.environ.get("SCHOOLBELL_TEST_REDIS_SERVER", "/usr/bin/redis-server")
HOST = "127.0.0.1"


class RedisServer:
    """One redis-server process of a test's own, in `directory` (its log is there)."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = Path(directory)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._paused = False

    @property
    def url(self) -> str:
        """redis://127.0.0.1:<port>/0"""
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout_s: float = 10) -> RedisServer:
        """Start redis-server on this port and wait until it answers PING."""
        if not Path(REDIS_SERVER).exists():
            require_service("redis-server", FileNotFoundError(REDIS_SERVER))
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 (closed in _reap)
        where = ["--bind", HOST, "--port", str(self.port), "--dir", str(self.directory)]
        # No persistence; the log goes to stdout, which is the log file.
        options = ["--save", "", "--appendonly", "no", "--logfile", ""]
        self.proc = subprocess.Popen(
            [REDIS_SERVER, *where, *options],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._paused = False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reap()
                raise RuntimeError(f"redis-server exited early; see {self.log_path}")
            if self._answers_ping():
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not come up; see {self.log_path}")

    def stop(self) -> None:
        """SIGTERM and wait for it to exit (SIGKILL after 10 s)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: every connection drops at once, as in a crash."""
        self._signal(signal.SIGKILL)

    def restart(self, timeout_s: float = 10) -> RedisServer:
        """Stop (if running) and start again on the same port, empty."""
        self.stop()
        return self.start(timeout_s)

    def pause(self) -> None:
        """SIGSTOP: the process still holds every connection but answers nothing."""
        assert self.proc is not None and self.proc.poll() is None, "not running"
        self.proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT: answer again (what was sent meanwhile is answered now)."""
        assert self.proc is not None, "not running"
        self.proc.send_signal(signal.SIGCONT)
        self._paused = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            if self._paused:  # a stopped process only acts on SIGTERM once continued
                self.proc.send_signal(signal.SIGCONT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.wait()
        self.proc, self._paused = None, False
        if self._log is not None:
            self._log.close()
            self._log = None

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> RedisServer:
        return self if self.running else self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
