"""Password hashing off the event loop: Argon2id in a small pool of native threads.

One gevent worker carries thousands of sockets, and a hash takes 50-200 ms of CPU here:
run on the event loop, 60 sign-ins at once delayed an alert from 13 ms to 3.9 s.
argon2-cffi releases the GIL, so each hash runs on a native thread while the loop goes
on serving sockets and pages. The threads run at the lowest CPU priority Linux has
(SCHED_IDLE; the threads libargon2 starts for its lanes inherit it): where they share a
core with the loop, they run only while the loop waits, so a broadcast is neither
slowed by them nor has its caches flushed by a 64 MiB hash mid-write (measured at
nice 10 and 19: a broadcast during 100 sign-ins wrote 1.7x slower).

Each hash holds its memory cost (64 MiB with argon2-cffi's default profile) while it
runs, so at most `threads` run at once. The rest wait in line: at most `queue_limit`
of them, each for at most `wait_s`; past that the caller gets `Busy` (503 with
Retry-After) instead of a request that hangs.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Iterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, current_app
from gevent.lock import BoundedSemaphore
from gevent.threadpool import ThreadPool

from . import errors
from .errors import Busy

MAX_AUTO_THREADS = 4
IDLE_THREAD_S = 60
# Where there is no SCHED_IDLE: the hashing threads' nice value (per thread on Linux).
HASH_THREAD_NICENESS = 19

# Whether this greenlet holds a turn (each greenlet has its own context).
_holding: contextvars.ContextVar[bool] = contextvars.ContextVar("hashing_turn", default=False)
_hasher = PasswordHasher()  # RFC 9106 "low memory": time 3, 64 MiB, 4 lanes
# Verified when an email is unknown, so a wrong email costs as long as a wrong password.
DUMMY_HASH = _hasher.hash("not a real password")


def auto_threads() -> int:
    """One hashing thread per CPU this process may use, at most MAX_AUTO_THREADS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_AUTO_THREADS, cpus))


class HashingPool:
    """A bounded line in front of a few native threads that hash and verify."""

    def __init__(self, threads: int, queue_limit: int, wait_s: float):
        self.threads = threads or auto_threads()
        self.queue_limit = queue_limit
        self.wait_s = wait_s
        self.waiting = 0  # callers in line for a thread
        self._slots = BoundedSemaphore(self.threads)
        self._pool: ThreadPool | None = None  # made on first use: after gunicorn forks
        self._pid = 0

    @contextlib.contextmanager
    def turn(self, *, wait: bool = True) -> Iterator[None]:
        """Wait in line for a hashing thread and hold it for the block (its hashes run
        on it). With `wait` False (a batch job such as an import) the caller waits
        without limit; else past the line's length or deadline it gets Busy. Nested
        turns of one greenlet are one turn."""
        if _holding.get():
            yield
            return
        if wait and self.waiting >= self.queue_limit:
            raise self._busy()
        self.waiting += 1
        try:
            got_slot = self._slots.acquire(timeout=self.wait_s if wait else None)
        finally:
            self.waiting -= 1
        if not got_slot:
            raise self._busy()
        held = _holding.set(True)
        try:
            yield
        finally:
            _holding.reset(held)
            self._slots.release()

    def run(self, work: Callable, *args, wait: bool = True):
        """Run `work(*args)` on a hashing thread, in this caller's turn, and return its
        result."""
        with self.turn(wait=wait):
            return self._threadpool().apply(_at_low_priority, (work, *args))

    def _threadpool(self) -> ThreadPool:
        if self._pool is None or self._pid != os.getpid():
            # Idle threads end after a while (a quiet afternoon holds no threads).
            pool = ThreadPool(self.threads, idle_task_timeout=IDLE_THREAD_S)
            self._pool, self._pid = pool, os.getpid()
        return self._pool

    def _busy(self) -> Busy:
        return Busy(errors.SIGNIN_BUSY, retry_after_s=max(1, round(self.wait_s)))


def _at_low_priority(work: Callable, *args):
    """Run `work` at the hashing threads' priority: SCHED_IDLE where there is one (the
    thread runs only when the loop's core has nothing else to do), else the lowest nice.
    One system call; the pool may replace its threads, so it is set every time."""
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, tid, HASH_THREAD_NICENESS)
    return work(*args)


def _pool() -> HashingPool:
    return current_app.extensions["schoolbell.passwords"]


def turn(*, wait: bool = True):
    """Hold a hashing thread for a block: a sign-in waits for its turn before it reads
    anything, so a crowd signing in at once waits in line instead of all doing their
    database work at the same moment (may raise Busy)."""
    return _pool().turn(wait=wait)


def hash(password: str, *, wait: bool = True) -> str:
    """Hash a password with Argon2id, off the event loop (may raise Busy)."""
    return _pool().run(_hasher.hash, password, wait=wait)


def verify(password_hash: str, password: str, *, wait: bool = True) -> bool:
    """Whether `password` matches `password_hash`, off the event loop (may raise Busy)."""
    return _pool().run(_verify, password_hash, password, wait=wait)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether a stored hash was made with older parameters (cheap: no hashing)."""
    return _hasher.check_needs_rehash(password_hash)


def init_app(app: Flask) -> None:
    config = app.config
    app.extensions["schoolbell.passwords"] = HashingPool(
        threads=config["PASSWORD_HASH_THREADS"],
        queue_limit=config["PASSWORD_QUEUE_LIMIT"],
        wait_s=config["PASSWORD_QUEUE_TIMEOUT_S"],
    )
