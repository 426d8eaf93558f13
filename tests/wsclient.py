"""A real WebSocket client for tests (websocket-client), speaking Schoolbell's protocol."""

from __future__ import annotations

import contextlib
import json
import time

import websocket

OPEN: list[WSClient] = []  # closed after each test by the conftest fixture


def close_all() -> None:
    """Close every client a test opened (so no socket outlives its test)."""
    while OPEN:
        OPEN.pop().close()


class WSClient:
    """One tab: connects to /ws, collects messages, answers nothing by itself."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        query: str = "",
        cookie: str | None = None,
        origin: str | None = None,
        compression: bool = False,
        protocols: list[str] | None = None,
    ):
        url = base_url.replace("http://", "ws://") + "/ws"
        params = [p for p in (f"token={token}" if token else "", query) if p]
        self.url = url + ("?" + "&".join(params) if params else "")
        self.headers = []
        if cookie:
            self.headers.append(f"Cookie: {cookie}")
        if compression:
            self.headers.append(
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
            )
        self.origin = origin
        self.protocols = protocols
        self.ws: websocket.WebSocket | None = None
        self.received: list[dict | str] = []

    def connect(self, timeout: float = 5) -> WSClient:
        self.ws = websocket.create_connection(
            self.url,
            timeout=timeout,
            header=self.headers,
            origin=self.origin,
            suppress_origin=self.origin is None,
            enable_multithread=True,
            subprotocols=self.protocols,
        )
        OPEN.append(self)
        return self

    def send_json(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    def send_text(self, text: str) -> None:
        self.ws.send(text)

    def recv(self, timeout: float = 5) -> dict | str:
        """The next message (JSON decoded when it is JSON)."""
        self.ws.settimeout(timeout)
        raw = self.ws.recv()
        try:
            message = json.loads(raw)
        except ValueError:
            message = raw
        self.received.append(message)
        return message

    def expect(self, kind: str, timeout: float = 5) -> dict:
        """Read until a message of this type arrives (others are kept in `received`)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no {kind!r} message within {timeout}s; got {self.received[-5:]}"
                )
            message = self.recv(left)
            if isinstance(message, dict) and message.get("type") == kind:
                return message

    def hello(self) -> dict:
        return self.expect("hello")

    def notifications(self, count: int, timeout: float = 5) -> list[dict]:
        """The next `count` notification messages."""
        return [self.expect("notification", timeout) for _ in range(count)]

    def nothing_within(self, seconds: float) -> bool:
        """True if no notification arrives for `seconds`."""
        try:
            self.expect("notification", seconds)
        except (TimeoutError, websocket.WebSocketTimeoutException, AssertionError):
            return True
        return False

    def close_status(self, timeout: float = 5) -> tuple[int | None, str]:
        """Read until the server closes; return (code, reason)."""
        self.ws.settimeout(timeout)
        while True:
            opcode, frame = self.ws.recv_data_frame(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                data = frame.data
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                return code, data[2:].decode(errors="replace")

    def ack(self, notification_id: int, state: str) -> None:
        self.send_json({"type": "ack", "id": notification_id, "state": state})

    def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.close(timeout=1)
            self.ws.shutdown()  # close() leaves the socket open when the peer is gone
