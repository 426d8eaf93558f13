"""A real gunicorn + gevent server on 127.0.0.1:<free port>, started and stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """gunicorn -k gevent serving wsgi:app with the given SCHOOLBELL_* environment."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 20) -> LiveServer:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [
                gunicorn,
                "-c",
                str(ROOT / "webapp" / "gunicorn_conf.py"),
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                str(self.workers),
                "wsgi:app",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited early; see {self.log_path}")
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not come up; see {self.log_path}")

    def stop(self, sig: int = signal.SIGQUIT) -> None:
        """Stop the server (SIGQUIT: quick; tests of graceful shutdown send SIGTERM)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
