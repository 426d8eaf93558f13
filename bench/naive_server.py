"""The naive design Schoolbell replaces: Flask + flask-sock, a set of sockets, a send loop.

    gunicorn -c webapp/gunicorn_conf.py --pythonpath bench naive_server:app

BENCH_NAIVE_MODE selects what the handshake negotiates:
- "plain" (default): the Sec-WebSocket-Extensions header is dropped before the
  handshake, so no compression: the naive loop at its best;
- "deflate": whatever the client offers is accepted, as simple-websocket does by
  default, so a browser-like client gets permessage-deflate (a zlib context per socket,
  each frame compressed once per socket).

`POST /broadcast` sends its request body, as is, as one text message to every socket:
`for ws in list(sockets): ws.send(msg)`. No auth, no database, no replay, no receipts.
"""

from __future__ import annotations

import os
import time

from flask import Flask, jsonify, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

MODE = os.environ.get("BENCH_NAIVE_MODE", "plain")
if MODE not in ("plain", "deflate"):
    raise SystemExit(f"BENCH_NAIVE_MODE must be plain or deflate, not {MODE!r}")

app = Flask(__name__)
sock = Sock(app)
sockets: set = set()


@app.before_request
def refuse_compression():
    """In plain mode, the client's permessage-deflate offer is ignored."""
    if MODE == "plain":
        request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


@sock.route("/ws")
def ws_route(ws):
    """Keep the socket in the set until the client goes away."""
    sockets.add(ws)
    try:
        while True:
            ws.receive()
    except ConnectionClosed:
        pass
    finally:
        sockets.discard(ws)


@app.post("/broadcast")
def broadcast():
    """Send the body to every socket, one after the other."""
    msg = request.get_data(as_text=True)
    sent = failed = 0
    started = time.perf_counter()
    for ws in list(sockets):
        try:
            ws.send(msg)
            sent += 1
        except Exception:  # a broken socket must not stop the loop
            failed += 1
    loop_ms = (time.perf_counter() - started) * 1000  # the server's own write time
    return jsonify({"sent": sent, "failed": failed, "loop_ms": round(loop_ms, 1)})


@app.get("/healthz")
def healthz():
    return jsonify({"status": "ok", "mode": MODE, "sockets": len(sockets)})
