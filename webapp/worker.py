"""The job runner: claims due jobs (services/jobs.py) and runs them, a few at a time.

Each web process runs one in a background greenlet (JOBS_IN_PROCESS, the default); a
bigger installation turns that off and runs `flask --app wsgi worker` (or
`python -m webapp.worker`) instead, as many as it likes: claims never overlap.

Why it cannot slow a broadcast on the same worker much: it runs at most JOB_CONCURRENCY
jobs at once, each in its own greenlet; every network wait (push service, SMTP) yields
to the event loop; and in a web process no job starts within JOB_HOLD_AFTER_BROADCAST_MS
of a broadcast's start, and none that runs takes its next step then (jobs.
yield_to_broadcasts), so a fan-out to thousands of tabs waits for at most one step of
each running job (bench: "Web Push").
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

import gevent
from flask import Flask
from gevent.event import Event
from gevent.pool import Pool
from sqlalchemy.exc import SQLAlchemyError

from .db import session_scope
from .models import JobState
from .services import jobs

log = logging.getLogger(__name__)
TOUCHED_FLUSH_S = 0.5  # how often status pages hear that pushes or e-mails went out


class JobRunner:
    """Claims due jobs and runs each in a greenlet of a bounded pool."""

    def __init__(
        self,
        app: Flask,
        on_finished: Callable[[set[int]], None] | None = None,
        hold: Callable[[], float] | None = None,
    ):
        """`on_finished(notification ids)`: pushes or e-mails of these went out.
        `hold()`: how many seconds to wait before starting another job (0: none), so a
        broadcast on this worker runs first."""
        config = app.config
        self.app = app
        self.on_finished = on_finished
        self.hold = hold
        self.pool = Pool(config["JOB_CONCURRENCY"])
        self.poll_s = config["JOB_POLL_INTERVAL_MS"] / 1000
        self.lease_s = config["JOB_LEASE_S"]
        self.wakeup = Event()
        self.stopping = False
        self.greenlet: gevent.Greenlet | None = None
        self.ready: deque[jobs.JobRef] = deque()  # claimed, waiting for a free slot
        self.touched: set[int] = set()  # announcements whose jobs finished, not yet told
        self._told_at = 0.0

    def start(self) -> JobRunner:
        from .services import load_job_handlers

        load_job_handlers()
        for queue_first_run in jobs.AT_START:
            try:
                queue_first_run(self.app)
            except SQLAlchemyError:  # the database is down: the next start tries again
                log.exception("queueing %s failed", queue_first_run.__qualname__)
        if self.hold is not None:
            self.app.extensions[jobs.HOLD_EXTENSION] = self.hold
        self.greenlet = gevent.spawn(self._loop)
        return self

    def wake(self) -> None:
        """Look for due jobs now (something due at once was just queued here)."""
        self.wakeup.set()

    def stop(self, timeout_s: float = 5) -> None:
        """Claim nothing more and hand back what was claimed but not started; give
        running jobs `timeout_s` to end (an unfinished one runs again after its lease)."""
        self.stopping = True
        self.wakeup.set()
        if self.greenlet is not None:
            self.greenlet.kill()
        self._release()
        self.pool.join(timeout=timeout_s)
        self._tell(force=True)

    def _loop(self) -> None:
        while not self.stopping:
            self._claim_ahead()
            while self.ready and self.pool.free_count():
                self.pool.spawn(self._run_one, self.ready.popleft())
            self._tell()
            if self.ready:
                self.pool.wait_available(timeout=self.poll_s)  # busy: start as slots free
            else:
                self.wakeup.wait(self.poll_s)
                self.wakeup.clear()

    def _claim_ahead(self) -> None:
        """Keep up to two pools' worth of due jobs claimed: one claim per batch of jobs,
        not per job, while a big fan-out is being worked through."""
        size = self.pool.size
        in_hand = len(self.ready) + size - self.pool.free_count()
        if in_hand > size:
            return
        try:
            with session_scope(self.app) as session:
                self.ready.extend(
                    jobs.claim(session, limit=2 * size - in_hand, lease_s=self.lease_s)
                )
        except SQLAlchemyError:
            log.exception("claiming jobs failed; trying again shortly")

    def _release(self) -> None:
        """Hand claimed jobs that never started back to the queue."""
        ready, self.ready = list(self.ready), deque()
        if not ready:
            return
        try:
            with session_scope(self.app) as session:
                jobs.release(session, ready)
        except SQLAlchemyError:  # their leases end anyway
            log.exception("handing back %d claimed jobs failed", len(ready))

    def _run_one(self, job: jobs.JobRef) -> None:
        jobs.yield_to_broadcasts(self.app)
        try:
            outcome = jobs.run(self.app, job)
        except SQLAlchemyError:  # recording the end failed: the lease brings it back
            log.exception("recording the end of job %s failed", job.key)
            return
        finally:
            self.wakeup.set()  # it may have queued more (a fan-out): look again
        if outcome is JobState.DONE and job.notification_id is not None:
            self.touched.add(job.notification_id)

    def _tell(self, force: bool = False) -> None:
        """Tell status pages (at most every TOUCHED_FLUSH_S) whose jobs finished."""
        now = time.monotonic()
        if not self.touched or self.on_finished is None:
            return
        if not force and now - self._told_at < TOUCHED_FLUSH_S:
            return
        touched, self.touched = self.touched, set()
        self._told_at = now
        try:
            self.on_finished(touched)
        except Exception:
            log.exception("telling status pages about finished jobs failed")


def main() -> None:
    """`python -m gevent.monkey --module webapp.worker` (`flask --app wsgi worker`): run
    jobs in this process until SIGTERM or SIGINT."""
    import os
    import signal
    import sys

    from gevent import monkey

    if not monkey.is_module_patched("socket"):  # `python -m webapp.worker`: patch first
        from .cli import WORKER_COMMAND

        os.execv(sys.executable, WORKER_COMMAND)

    from . import create_app

    app = create_app()
    live = app.extensions["schoolbell.live"]
    runner = JobRunner(app, on_finished=live.jobs_finished).start()
    log.info("job worker started (%d at once)", app.config["JOB_CONCURRENCY"])
    done = Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, done.set)
    done.wait()
    log.info("job worker stopping")
    runner.stop()
    live.shutdown()


if __name__ == "__main__":
    main()
