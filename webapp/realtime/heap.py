"""Garbage collection for a process that holds thousands of long-lived sockets.

Every open socket keeps objects that CPython's cyclic collector tracks (simple-websocket's
Server and its reader, the WSGI environ, our Connection). At 10,000 sockets a worker holds
about 1.4 million of them, and a full collection, which runs whenever the old generation
has grown by a quarter, scans them all: measured, about 0.7 s with the whole worker
stopped, several times while clients connect and now and then during a broadcast.

So the heap keeper (started by `Live.serve()`, in server workers only; the collector's
thresholds stay as they are):
- at start, collects once and freezes what start-up created (`gc.freeze()`: never
  scanned again);
- after every full collection (a `gc.callbacks` hook) freezes the survivors too, so the
  next full collection scans only what is newer: pauses follow recent allocation, not
  the number of sockets;
- sweeps the frozen objects (unfreeze, collect, freeze) once enough sockets have closed
  since the last sweep (`sweep_after_closes`, or a quarter of those open if more): a
  closed socket leaves objects in reference cycles that only a collection of the frozen
  objects frees. A greenlet checks every `check_every_s` and sweeps only when no
  broadcast has started for `quiet_s`.
"""

from __future__ import annotations

import gc
import logging
import time

import gevent

log = logging.getLogger(__name__)


class HeapKeeper:
    """Freezes long-lived objects and sweeps them when enough sockets have closed."""

    def __init__(
        self,
        hub,
        *,
        sweep_after_closes: int = 1000,
        quiet_s: float = 2.0,
        check_every_s: float = 1.0,
    ):
        self.hub = hub
        self.sweep_after_closes = sweep_after_closes
        self.quiet_s = quiet_s
        self.check_every_s = check_every_s
        self.closes_at_sweep = 0
        self.sweeps = 0
        self.sweeping = False
        self.stopped = False
        self.worker: gevent.Greenlet | None = None

    def start(self) -> None:
        """Freeze start-up's objects, freeze survivors after each full collection from
        now on, and start checking whether a sweep is due."""
        gc.collect()
        gc.freeze()
        self.closes_at_sweep = self.hub.closed_total
        gc.callbacks.append(self._after_collection)
        self.worker = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop freezing and sweeping (shutdown: the sockets closing now need no sweep)."""
        self.stopped = True
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)
        if self.worker is not None:
            self.worker.kill(block=False)

    def _after_collection(self, phase: str, info: dict) -> None:
        # Right after a full collection, only survivors are left: freeze them.
        if phase == "stop" and info["generation"] == 2 and not self.sweeping:
            gc.freeze()

    def sweep_due(self) -> bool:
        """Enough sockets closed since the last sweep: a quarter of those open, at
        least `sweep_after_closes`."""
        closed = self.hub.closed_total - self.closes_at_sweep
        return closed >= max(self.sweep_after_closes, self.hub.count // 4)

    def _run(self) -> None:
        while True:
            gevent.sleep(self.check_every_s)
            if self.stopped:
                return
            if self.sweep_due() and self.hub.quiet_for() >= self.quiet_s:
                self.sweep()

    def sweep(self) -> int:
        """Collect the frozen objects too, then freeze the survivors; return how many
        objects were freed."""
        self.sweeping = True
        started = time.perf_counter()
        try:
            self.closes_at_sweep = self.hub.closed_total
            gc.unfreeze()
            freed = gc.collect()
            gc.freeze()
        finally:
            self.sweeping = False
        self.sweeps += 1
        log.info(
            "heap sweep: %d objects freed in %.0f ms; %d kept",
            freed,
            (time.perf_counter() - started) * 1000,
            gc.get_freeze_count(),
        )
        return freed
