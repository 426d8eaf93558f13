"""Who is online across every process: this process's hub, plus the others' shares.

One process: the hub alone. With Redis, each process keeps its share in a hash of its
own (user id -> "sockets tabs since"), written a moment after it changes and kept alive
by a TTL it refreshes; a sorted set lists the processes by when their share expires. A
process killed with SIGKILL stops refreshing, and its tabs leave presence when its
share expires (PRESENCE_TTL_S). Each process keeps a copy of the others' shares, read
again when one says it changed (a `presence_changed` event) and on every refresh, so
drawing the online panel or checking a user's socket cap reads no Redis at all.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import gevent
from gevent.event import Event as Flag

from .hub import Hub, Online

log = logging.getLogger(__name__)


class Presence:
    """One process: presence is this hub's."""

    def __init__(self, hub: Hub):
        self.hub = hub

    def changed(self, user_id: int) -> None:
        """This process's sockets or tabs of this user changed."""

    def changed_elsewhere(self, process: str) -> None:
        """Another process's share changed."""

    def sockets_elsewhere(self, user_id: int) -> int:
        """This user's sockets on other processes (for the per-user cap)."""
        return 0

    def online(self) -> dict[int, Online]:
        """Every online user: their sockets, tabs and first connect time."""
        return self.hub.presence()

    def online_users(self) -> int:
        """How many people are online (cheaper than len(online()): no Online values)."""
        return len(self.hub.by_user)

    def serve(self, process: str) -> None:
        pass

    def stop(self) -> None:
        pass


class SharedPresence(Presence):
    """Presence shared through Redis (see the module's docstring)."""

    PREFIX = "schoolbell:presence"
    FLUSH_INTERVAL_S = 0.5  # a change is written (and told) at most this late

    def __init__(self, hub: Hub, client, *, ttl_s: float, on_changed: Callable[[], None], announce):
        super().__init__(hub)
        self.client = client
        self.ttl_s = ttl_s
        self.on_changed = on_changed  # the online views here are stale
        self.announce = announce  # publishes PresenceChanged(process) to the others
        self.process = ""
        self.dirty: set[int] = set()
        self.rewrite = True  # write the whole share (first time, or Redis lost it)
        self.others: dict[str, dict[int, Online]] = {}
        self.expiry: dict[str, float] = {}  # process -> when its share expires (epoch s)
        self.stale: set[str] = set()  # processes whose share must be read again
        self._wake = Flag()
        self._worker: gevent.Greenlet | None = None
        self._last_heartbeat = 0.0
        self._failing = False

    @property
    def processes_key(self) -> str:
        return f"{self.PREFIX}:processes"

    def share_key(self, process: str) -> str:
        return f"{self.PREFIX}:{process}"

    # What the rest of the process asks --------------------------------------------------
    def changed(self, user_id: int) -> None:
        self.dirty.add(user_id)
        self._wake.set()

    def changed_elsewhere(self, process: str) -> None:
        if process != self.process:
            self.stale.add(process)
            self._wake.set()

    def sockets_elsewhere(self, user_id: int) -> int:
        now = time.time()
        return sum(
            share[user_id].sockets
            for process, share in self.others.items()
            if user_id in share and self.expiry.get(process, 0) > now
        )

    def online(self) -> dict[int, Online]:
        merged = self.hub.presence()
        now = time.time()
        for process, share in self.others.items():
            if self.expiry.get(process, 0) <= now:
                continue
            for user_id, online in share.items():
                here = merged.get(user_id)
                merged[user_id] = online if here is None else here.plus(online)
        return merged

    def online_users(self) -> int:
        now = time.time()
        users = set(self.hub.by_user)
        for process, share in self.others.items():
            if self.expiry.get(process, 0) > now:
                users.update(share)
        return len(users)

    # The worker: write this share, read the others ---------------------------------------
    def serve(self, process: str) -> None:
        self.process = process
        self._worker = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            self._wake.wait(timeout=self.ttl_s / 3)
            self._wake.clear()
            try:
                if self.sync() and self._failing:  # it did reach Redis
                    log.warning("presence in Redis is back")
                    self._failing = False
            except Exception as exc:  # Redis away: keep what is dirty and try again
                if not self._failing:
                    log.warning("presence in Redis unavailable (%s); retrying", exc)
                self._failing = True
                gevent.sleep(1.0)
                self._wake.set()
                continue
            gevent.sleep(self.FLUSH_INTERVAL_S)  # coalesce: at most twice a second

    def sync(self) -> bool:
        """Write what changed here, refresh this share's TTL when due, and read the
        shares of processes that changed (or appeared, or expired). Returns whether
        Redis was asked anything."""
        now = time.time()
        dirty, self.dirty = self.dirty, set()
        heartbeat = self.rewrite or now - self._last_heartbeat >= self.ttl_s / 3
        try:
            wrote = self._write(dirty, heartbeat, now)
        except Exception:
            self.dirty |= dirty
            raise
        if wrote:
            self.announce()
        gone = False
        if heartbeat:
            self._last_heartbeat = now
            gone = self._read_processes(now)
        stale, self.stale = self.stale, set()
        try:
            for process in stale:
                self._read_share(process)
        except Exception:
            self.stale |= stale
            raise
        if stale or gone:
            self.on_changed()  # this process's own changes were told at once
        return bool(wrote or heartbeat or stale)

    def _write(self, dirty: set[int], heartbeat: bool, now: float) -> bool:
        key = self.share_key(self.process)
        if self.rewrite:
            dirty = set(self.hub.by_user)
        present: dict[str, str] = {}
        gone: list[str] = []
        for user_id in dirty:
            online = self.hub.online(user_id)
            if online is None:
                gone.append(str(user_id))
            else:
                present[str(user_id)] = f"{online.sockets} {online.tabs} {online.since:.0f}"
        if not (present or gone or heartbeat):
            return False  # nothing to say
        pipe = self.client.pipeline(transaction=True)
        pipe.exists(key)
        if self.rewrite:
            pipe.delete(key)
        if present:
            pipe.hset(key, mapping=present)
        if gone and not self.rewrite:
            pipe.hdel(key, *gone)
        pipe.expire(key, int(self.ttl_s))
        pipe.zadd(self.processes_key, {self.process: now + self.ttl_s})
        results = pipe.execute()
        # The share was gone (Redis restarted, or it expired while Redis could not be
        # reached), and only what changed was written: write the whole share next time.
        expired = not self.rewrite and results[0] == 0 and bool(self.hub.by_user)
        rewrote, self.rewrite = self.rewrite, expired
        if expired:
            self._wake.set()
        return bool(present or gone or rewrote)

    def _read_processes(self, now: float) -> bool:
        """Which processes have a live share: read the new ones, forget the dead
        (returns whether one was forgotten)."""
        self.client.zremrangebyscore(self.processes_key, "-inf", now)
        live = {
            name.decode(): score
            for name, score in self.client.zrange(self.processes_key, 0, -1, withscores=True)
        }
        live.pop(self.process, None)
        dead = set(self.others) - set(live)
        for process in dead:
            del self.others[process]
            self.expiry.pop(process, None)
        for process, expires in live.items():
            if process not in self.others:
                self.stale.add(process)
            self.expiry[process] = expires
        return bool(dead)

    def _read_share(self, process: str) -> None:
        share: dict[int, Online] = {}
        for user_id, value in self.client.hgetall(self.share_key(process)).items():
            with contextlib.suppress(ValueError):
                sockets, tabs, since = value.split()
                share[int(user_id)] = Online(int(sockets), int(tabs), float(since))
        if share:
            self.others[process] = share
            self.expiry.setdefault(process, time.time() + self.ttl_s)
        else:
            self.others.pop(process, None)

    def stop(self) -> None:
        """Leave at once (a clean shutdown), rather than when the share expires."""
        if self._worker is not None:
            self._worker.kill(block=False)
        with contextlib.suppress(Exception):
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.share_key(self.process))
            pipe.zrem(self.processes_key, self.process)
            pipe.execute()
            self.announce()
