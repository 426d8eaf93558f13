"""How much CPU one Web Push costs the process that sends it (the event loop's share).

    python bench/push_cpu.py [pushes]

The stand-in push service (tests/push_service.py) runs in a child process, so its
decrypting and checking is not counted. Measured in this process, with process_time:
(1) the payload JSON, the cached VAPID header and pywebpush's encryption (an ephemeral
P-256 key, ECDH, HKDF, AES-GCM), no network; (2) the whole send_push path's HTTP part:
that plus requests/urllib3 over a kept-alive connection to the stand-in. Signing a
VAPID header, which the cache saves on all but one push per service per 11 hours, is
measured alone for comparison.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _serve(queue, stop) -> None:
    from tests.push_service import PushService

    with PushService() as service:
        browser = service.browser("bench")
        queue.put((service.origin, browser.subscription))
        stop.wait()
        queue.put(len(service.errors))


def _per_push_us(fn, count: int) -> float:
    fn()  # warm up (connection, imports)
    started = time.process_time()
    for _ in range(count):
        fn()
    return (time.process_time() - started) / count * 1e6


def main(count: int = 500) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from pywebpush import WebPusher

    from webapp.models import Priority
    from webapp.services import push, vapid

    queue, stop = multiprocessing.Queue(), multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(queue, stop), daemon=True)
    server.start()
    origin, info = queue.get(timeout=10)
    signer = vapid.Vapid(ec.generate_private_key(ec.SECP256R1()), "mailto:bench@school.test")
    notification = SimpleNamespace(
        id=1,
        title="Trip tomorrow",
        priority=Priority.URGENT,
        require_ack=False,
        created_at=datetime.now(UTC),
    )
    shown = push.push_message(notification, push.receipt_token("k" * 48, 1, 1))
    body = "Bring lunch and a coat; the bus leaves at 8:15 from the main gate. " * 40
    session = push._PushHttp()  # what send_push uses

    def prepare_only():
        data = push.encode(shown, body)
        signer.authorization(origin)
        WebPusher(info, requests_session=session).encode(data, "aes128gcm")

    def send():
        data = push.encode(shown, body)
        headers = {"Authorization": signer.authorization(origin), "Urgency": "high", "Topic": "n1"}
        response = WebPusher(info, requests_session=session).send(
            data=data, headers=headers, ttl=3600, content_encoding="aes128gcm", timeout=10
        )
        assert response.status_code == 201, response.status_code

    def sign_only():
        signer._headers.clear()
        signer.authorization(origin)

    print(f"{count} pushes, {len(push.encode(shown, body))}-byte payload")
    print(f"  encrypt + cached header, no network: {_per_push_us(prepare_only, count):7.0f} µs")
    print(f"  whole HTTP send (kept-alive):         {_per_push_us(send, count):7.0f} µs")
    print(f"  signing a VAPID header (uncached):    {_per_push_us(sign_only, count):7.0f} µs")
    stop.set()
    errors = queue.get(timeout=10)
    server.join(timeout=5)
    assert errors == 0, f"the stand-in refused {errors} pushes"


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
