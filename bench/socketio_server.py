"""The usual Python choice: Flask-SocketIO broadcasting with gevent.

    gunicorn -c webapp/gunicorn_conf.py --pythonpath bench socketio_server:app

Clients connect with the websocket transport only (no long-polling). Under gunicorn's
gevent worker, python-engineio serves WebSockets through simple-websocket, which accepts
permessage-deflate when the client offers it (socket.io-client in Node does, as browsers
do). Each socket has its own packet queue drained by its own writer greenlet.

`POST /broadcast` emits the JSON body as the "alert" event to every connected client.
"""

from __future__ import annotations

from flask import Flask, jsonify, request
from flask_socketio import SocketIO

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent", logger=False, engineio_logger=False)
connected = {"count": 0}


@socketio.on("connect")
def on_connect():
    connected["count"] += 1


@socketio.on("disconnect")
def on_disconnect(*_args):
    connected["count"] -= 1


@app.post("/broadcast")
def broadcast():
    """Emit the payload to everyone (python-socketio queues it on every socket)."""
    socketio.emit("alert", request.get_json())
    return jsonify({"sent": connected["count"]})


@app.get("/healthz")
def healthz():
    return jsonify({"status": "ok", "sockets": connected["count"]})
