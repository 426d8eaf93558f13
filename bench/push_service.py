"""The benchmark's push service: the test suite's strict stand-in (tests/push_service.py:
it decrypts every push with the browser's key and checks its VAPID signature, TTL and
Urgency) in a process of its own, run at SCHED_IDLE on the load generator's core, so the
load generator's receipts always come first. One JSON command per line on stdin, one
JSON reply per line on stdout:

    {"cmd": "browsers", "n": N, "file": PATH}  N fake browsers; their PushSubscription
                                               JSON written to PATH -> {"origin"}
    {"cmd": "stats"}   -> {"accepted", "refused", "errors", "first_at", "last_at"}
                          (times from time.time(), for the orchestrator's clock)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.push_service import PushService  # noqa: E402


def main() -> None:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    service = PushService().start()
    names: list[str] = []
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "browsers":
            subscriptions = []
            for _ in range(command["n"]):
                name = f"b{len(names)}"
                names.append(name)
                subscriptions.append(service.browser(name).subscription)
            Path(command["file"]).write_text(json.dumps(subscriptions))
            reply = {"origin": service.origin}
        elif command["cmd"] == "stats":
            pushes = [p for name in names for p in service.received(name)]
            accepted = [p.at for p in pushes if p.status == 201]
            reply = {
                "accepted": len(accepted),
                "refused": len(pushes) - len(accepted),
                "errors": len(service.errors),
                "first_errors": service.errors[:5],
                "first_at": min(accepted, default=None),
                "last_at": max(accepted, default=None),
            }
        else:
            reply = {"error": f"unknown command {command['cmd']!r}"}
        print(json.dumps({"ok": "error" not in reply, **reply}), flush=True)
    service.close()


if __name__ == "__main__":
    main()
