"""A faithful port of the old design's client (the one Schoolbell replaces), to drive
against a real server exactly as those clients behave:

    ws = new WebSocket(base + "/api/websocket/notifications?token=" + token)
    ws.onopen    = () => timer = setInterval(() => ws.send("ping"), PING_MS)
    ws.onmessage = (e) => { const n = JSON.parse(e.data);
                            popup(n.title || "Notification", n.body || "") }
    ws.onclose   = () => { clearInterval(timer); setTimeout(connect, 5000) }

Every message is decoded as JSON and shown as a popup; a message that is not JSON is a
decode error (the old client threw in onmessage). WebSocket pings from the server are
answered by the library, as browsers do. websocket-client, threads, no asyncio.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass

import websocket

from .helpers import wait_for

PATH = "/api/websocket/notifications"


@dataclass(frozen=True)
class Popup:
    """What the old client showed: its title and body as it drew them."""

    title: str
    body: str
    message: object  # the decoded JSON, for the test to look at

    @property
    def empty(self) -> bool:
        """The popup the old client shows for a message that is no announcement."""
        return (
            not isinstance(self.message, dict)
            or not self.message.get("title")
            or not (self.message.get("body"))
        )


class LegacyClient:
    """Connects with ?token=, sends "ping" every `ping_interval_s`, shows every message
    as a popup, and reconnects `reconnect_after_s` after any close, until stop()."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        ping_interval_s: float = 1.0,
        reconnect_after_s: float = 5.0,
    ):
        self.url = base_url.replace("http://", "ws://") + PATH + "?token=" + token
        self.ping_interval_s = ping_interval_s
        self.reconnect_after_s = reconnect_after_s
        self.popups: list[Popup] = []
        self.decode_errors: list[str] = []
        self.closes: list[tuple[int | None, str]] = []  # (code, reason) of each close
        self.connects = 0
        self.pings_sent = 0
        self._ws: websocket.WebSocket | None = None
        self._stopped = threading.Event()
        self._paused = threading.Event()  # set: stay disconnected until resume()
        self._thread: threading.Thread | None = None

    # The old client's life -------------------------------------------------------------
    def start(self) -> LegacyClient:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopped.is_set():
            if not self._paused.is_set():
                self._session()
            if self._stopped.wait(self.reconnect_after_s):
                return

    def _session(self) -> None:
        """One connection: open, ping on a timer, show every message, until it closes."""
        try:
            ws = websocket.create_connection(self.url, timeout=10, suppress_origin=True)
        except (OSError, websocket.WebSocketException) as exc:
            self.closes.append((None, f"connect failed: {exc}"))
            return
        self._ws, self.connects = ws, self.connects + 1
        ws.settimeout(None)
        pinger = threading.Thread(target=self._ping, args=(ws,), daemon=True)
        pinger.start()
        try:
            while True:
                opcode, frame = ws.recv_data_frame()
                payload = frame.data
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    self.closes.append((code, payload[2:].decode(errors="replace")))
                    return
                self._on_message(payload.decode(errors="replace"))
        except (OSError, websocket.WebSocketException) as exc:
            self.closes.append((None, f"connection lost: {exc.__class__.__name__}"))
        finally:
            self._ws = None
            with contextlib.suppress(Exception):
                ws.shutdown()

    def _ping(self, ws: websocket.WebSocket) -> None:
        while not self._stopped.wait(self.ping_interval_s):
            if self._ws is not ws:
                return
            try:
                ws.send("ping")
                self.pings_sent += 1
            except (OSError, websocket.WebSocketException):
                return

    def _on_message(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            self.decode_errors.append(raw)
            return
        title = (message.get("title") if isinstance(message, dict) else None) or "Notification"
        body = (message.get("body") if isinstance(message, dict) else None) or ""
        self.popups.append(Popup(title, body, message))

    # For the test ----------------------------------------------------------------------
    def wait_connected(self, count: int = 1, timeout: float = 10) -> None:
        wait_for(lambda: self.connects >= count and self._ws is not None, timeout)

    def wait_popups(self, count: int, timeout: float = 10) -> list[Popup]:
        wait_for(lambda: len(self.popups) >= count, timeout)
        return list(self.popups)

    def drop(self) -> None:
        """The connection goes (a laptop lid closes); it stays away until resume()."""
        self._paused.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.shutdown()

    def resume(self) -> None:
        self._paused.clear()

    def stop(self) -> None:
        self._stopped.set()
        self.drop()
        if self._thread is not None:
            self._thread.join(timeout=5)


def shown(popups: list[Popup]) -> list[tuple[str, str]]:
    """(title, body) of each popup, as a person saw them."""
    return [(p.title, p.body) for p in popups]


def ensure_stopped(clients: list[LegacyClient]) -> None:
    for client in clients:
        client.stop()


def settle(seconds: float) -> None:
    """Let the client run (and ping) for a while."""
    time.sleep(seconds)
