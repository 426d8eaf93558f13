"""A TCP proxy on 127.0.0.1 and a free port that can go silent: a half-open link.

    proxy = TcpProxy("127.0.0.1", redis_server.port)
    app = make_test_app(..., RATELIMIT_STORAGE_URL=proxy.url_for(db=0))
    proxy.stall()    # nothing is forwarded either way; every connection stays open, so
                     # the client sees no error, only silence (as when a host or a NAT
                     # on the way disappears without a FIN or RST)
    proxy.heal()     # new connections are forwarded again; the stalled ones are closed
    proxy.close()

Plain threads (tests run without gevent): one accepts, two per connection forward. A
connection accepted while stalled is held open and never connected onwards.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

HOST = "127.0.0.1"
CHUNK = 65536
POLL_S = 0.05  # how often a forwarding thread looks up from an idle socket


class _Link:
    """One client connection and, unless it arrived while stalled, its upstream one."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None, stalled: bool):
        self.client, self.upstream, self.stalled = client, upstream, stalled
        self.lock = threading.Lock()  # held while bytes move: stall() waits for it
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):  # not connected (any more)
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to target_host:target_port, until told to stall."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._threads: list[threading.Thread] = []
        self._stalled = False
        self._closed = False
        self._start(self._accept_loop)

    def url_for(self, db: int = 0) -> str:
        """A redis:// URL that reaches the target through this proxy."""
        return f"redis://{HOST}:{self.port}/{db}"

    def stall(self) -> None:
        """Stop forwarding in both directions, now and for new connections, keeping
        every connection open. Once this returns, no further byte gets through."""
        with self._lock:
            self._stalled = True
            links = list(self._links)
        for link in links:
            with link.lock:
                link.stalled = True

    def heal(self) -> None:
        """Forward new connections again; connections that stalled are closed (their
        clients see the connection end and reconnect)."""
        with self._lock:
            self._stalled = False
            stalled = [link for link in self._links if link.stalled]
            self._links = [link for link in self._links if not link.stalled]
        for link in stalled:
            with link.lock:
                link.close()

    def close(self) -> None:
        """Stop accepting, close every connection, and wait for the threads."""
        with self._lock:
            self._closed = True
            links, self._links = self._links, []
        self._listener.close()
        for link in links:
            with link.lock:
                link.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="tcp-proxy")
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept_loop(self) -> None:
        self._listener.settimeout(POLL_S)  # close() does not wake a blocked accept()
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # the listener was closed
                return
            client.settimeout(None)
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        with self._lock:
            stalled, closed = self._stalled, self._closed
        if closed:
            client.close()
            return
        upstream = None
        if not stalled:
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:  # the target is down: the client sees its connection end
                client.close()
                return
            upstream.settimeout(None)
        link = _Link(client, upstream, stalled)
        with self._lock:
            if self._closed:
                link.close()
                return
            self._links.append(link)
        if upstream is not None:
            self._start(self._forward, link, client, upstream)
            self._start(self._forward, link, upstream, client)

    def _forward(self, link: _Link, source: socket.socket, destination: socket.socket) -> None:
        """Copy source to destination until either end closes; while the link is stalled,
        read nothing (what the peer sends waits in the kernel, unanswered)."""
        poller = select.poll()
        poller.register(source, select.POLLIN)
        while not link.closed:
            if link.stalled:
                time.sleep(POLL_S)
                continue
            if not poller.poll(POLL_S * 1000):
                continue
            with link.lock:
                if link.closed:
                    break
                if link.stalled:
                    continue
                try:
                    data = source.recv(CHUNK)
                    if data:
                        destination.sendall(data)
                except OSError:
                    data = b""
                if not data:  # one end closed: so does the other
                    link.close()
                    break
        self._forget(link)

    def _forget(self, link: _Link) -> None:
        with self._lock:
            if link in self._links and link.closed:
                self._links.remove(link)
