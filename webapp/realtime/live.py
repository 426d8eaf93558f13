"""The realtime runtime of one process: hub + broker + presence + receipt writer +
status pusher.

Views call it after they commit (`live().publish_sent(result)`); the broker brings
every event (a typed value, see events.py) back to every process's `handle()`, which
gives it to the handler of its type, which drives the local hub. An event published
here carries what this process already holds; one from another process names what to
read from the database, and is read only where a socket needs it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import gevent
from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from .. import errors, metrics
from ..db import session_scope, utcnow
from ..models import DeliveryState, Installation, Notification, Priority
from ..services import load_job_handlers
from ..services import receipts as receipts_service
from ..services import replay as replay_service
from ..services import users as users_service
from ..services.notifications import SendResult
from ..services.receipts import Receipt, record_receipts
from ..worker import JobRunner
from . import protocol, topics
from .broker import RedisBroker, make_broker
from .events import (
    CloseUser,
    Event,
    Fanout,
    NotificationChanged,
    NotificationsDeleted,
    NotificationSent,
    PresenceChanged,
    ReceiptsRecorded,
)
from .heap import HeapKeeper
from .hub import Hub
from .presence import Presence, SharedPresence

log = logging.getLogger(__name__)
MAX_PENDING_RECEIPTS = 200_000
# A catch-up reads back this much before the broker link was last known whole: an
# announcement's time is taken before its commit (thousands of deliveries take a
# while to write), and by the clock of the host that sent it. Sockets drop repeats.
CATCH_UP_OVERLAP = timedelta(seconds=60)


class ReceiptWriter:
    """Collects receipts from every socket here and writes them in batches, so a burst
    of thousands per second costs a few transactions, not thousands."""

    def __init__(self, app: Flask, on_written: Callable[[list[Receipt]], None]):
        self.app = app
        self.on_written = on_written
        self.interval_s = app.config["RECEIPT_FLUSH_INTERVAL_MS"] / 1000
        # (user, notification) -> the furthest state asked for, and when.
        self.pending: dict[tuple[int, int], Receipt] = {}
        self.worker: gevent.Greenlet | None = None

    def add(self, user_id: int, notification_id: int, state: str) -> None:
        state = DeliveryState(state)
        key = (user_id, notification_id)
        known = self.pending.get(key)
        if known is None or known.state.rank < state.rank:
            if len(self.pending) >= MAX_PENDING_RECEIPTS and known is None:
                log.error("receipt backlog full; dropping a receipt for %s", key)
                return
            self.pending[key] = Receipt(user_id, notification_id, state, utcnow())
        if self.worker is None or self.worker.dead:
            self.worker = gevent.spawn(self._run)

    def _run(self) -> None:
        backoff = self.interval_s
        while self.pending:
            gevent.sleep(backoff)
            backoff = self.interval_s if self.flush() else min(backoff * 2, 5.0)

    def flush(self) -> bool:
        """Write everything pending now; on failure keep it for the next try."""
        if not self.pending:
            return True
        batch, self.pending = self.pending, {}
        started = time.perf_counter()
        try:
            with session_scope(self.app) as session:
                record_receipts(session, batch.values())
        except SQLAlchemyError:
            log.exception("writing %d receipts failed; will retry", len(batch))
            for key, receipt in batch.items():  # newer receipts that arrived meanwhile win
                newer = self.pending.get(key)
                if newer is None or newer.state.rank < receipt.state.rank:
                    self.pending[key] = receipt
            return False
        finally:  # failed ones too: a slow database shows before it fails
            metrics.RECEIPT_FLUSH_SECONDS.observe(time.perf_counter() - started)
        metrics.RECEIPTS_WRITTEN.inc(len(batch))
        self.on_written(list(batch.values()))
        return True


class StatusPusher:
    """Re-renders watched fragments (a notification's status, who is online) and pushes
    them, at most once per interval per topic, whatever the rate of changes."""

    def __init__(self, app: Flask, hub: Hub):
        self.app = app
        self.hub = hub
        self.interval_s = app.config["STATUS_PUSH_INTERVAL_MS"] / 1000
        self.dirty: set[str] = set()
        self.worker: gevent.Greenlet | None = None

    def mark(self, topic: str) -> None:
        self.dirty.add(topics.base(topic))  # each language's fragment of it is stale
        if self.worker is None or self.worker.dead:
            self.worker = gevent.spawn(self._run)

    def mark_online(self) -> None:
        """Presence changed: every 'online' view is stale."""
        for topic in self.hub.watched_topics():
            if topic == topics.ONLINE or topic.startswith(topics.ONLINE + ":"):
                self.mark(topic)

    def _run(self) -> None:
        while self.dirty:
            gevent.sleep(self.interval_s)
            due, self.dirty = self.dirty, set()
            for topic in self.hub.watched_topics():  # the topics in every language watched
                if topics.base(topic) in due:
                    self.push(topic)

    def push(self, topic: str) -> None:
        try:
            with topics.rendering_context(self.app), session_scope(self.app) as session:
                html = topics.render(session, topic)
        except Exception:
            log.exception("rendering %s failed", topic)
            return
        if html is not None:
            self.hub.publish(topic, html)


class Live:
    """One per app (per process): the seam between views, the broker and the hub."""

    # Changes whose pushes (and e-mails) are due at once: the job runner looks now.
    WAKES_JOBS = (
        NotificationChanged.REMIND,
        NotificationChanged.RECONFIRM,
        NotificationChanged.ALL_CLEAR,
        NotificationChanged.RETRACT,
    )

    def __init__(self, app: Flask):
        config = app.config
        self.app = app
        self.hub = Hub(
            max_outbox_bytes=config["WS_MAX_OUTBOX_BYTES"],
            send_timeout_s=config["WS_SEND_TIMEOUT_S"],
            ping_interval_s=config["WS_PING_INTERVAL_S"],
            pong_timeout_s=config["WS_PONG_TIMEOUT_S"],
            on_presence=self._presence_changed,
        )
        self.broker = make_broker(config)
        self.receipts = ReceiptWriter(app, on_written=self.receipts_recorded)
        self.status = StatusPusher(app, self.hub)
        if isinstance(self.broker, RedisBroker):
            self.presence: Presence = SharedPresence(
                self.hub,
                self.broker.client,
                ttl_s=config["PRESENCE_TTL_S"],
                on_changed=self.status.mark_online,
                announce=lambda: self.broker.publish(PresenceChanged(self.broker.process)),
            )
        else:
            self.presence = Presence(self.hub)
        self.heap = HeapKeeper(self.hub, sweep_after_closes=config["GC_SWEEP_AFTER_CLOSES"])
        self.jobs: JobRunner | None = None  # started by serve() when JOBS_IN_PROCESS
        self.hold_jobs_s = config["JOB_HOLD_AFTER_BROADCAST_MS"] / 1000
        self.serving_since: datetime | None = None
        self._epoch: str | None = None
        self.handlers: dict[type[Event], Callable] = {
            NotificationSent: self.on_notification_sent,
            NotificationChanged: self.on_notification_changed,
            ReceiptsRecorded: self.on_receipts_recorded,
            CloseUser: self.on_close_user,
            PresenceChanged: self.on_presence_changed,
            NotificationsDeleted: self.on_notifications_deleted,
        }
        self.broker.start(self.handle)

    # Called by views and services' callers, after commit -------------------------------
    def publish_sent(self, result: SendResult) -> None:
        """A send was committed: hand a new announcement to every process (a repeat of
        an earlier send was published the first time)."""
        if result.created and not result.scheduled:
            self.notification_sent(result.notification, result.author_name, result.recipient_ids)
            metrics.ANNOUNCEMENTS_SENT.labels(result.notification.priority.value).inc()
            if result.notification.priority is Priority.EMERGENCY and self.jobs is not None:
                self.jobs.wake()  # its pushes and e-mails are due now

    def notification_sent(
        self, notification: Notification, author_name: str | None, recipient_ids: list[int]
    ) -> None:
        fanout = Fanout(tuple(recipient_ids), protocol.notification(notification, author_name))
        self.broker.publish(NotificationSent(notification.id, fanout))

    def publish_changed(self, notification_id: int, change: str) -> None:
        """A sent announcement was edited, withdrawn, expired, ended (all clear), or its
        unconfirmed recipients are reminded: every process tells its sockets."""
        self.broker.publish(NotificationChanged(notification_id, change))
        if change in self.WAKES_JOBS and self.jobs:
            self.jobs.wake()

    def wake_jobs(self) -> None:
        """Something due now was queued here (a reminder): the job runner looks now."""
        if self.jobs is not None:
            self.jobs.wake()

    def answer_recorded(self, notification_id: int) -> None:
        """A roll-call answer was written: the emergency's status pages redraw."""
        self.broker.publish(ReceiptsRecorded((notification_id,), None, ()))

    def notifications_deleted(self, notification_ids: list[int]) -> None:
        """Retention deleted these announcements: every process's tabs drop them."""
        for start in range(0, len(notification_ids), NotificationsDeleted.MAX_IDS):
            chunk = notification_ids[start : start + NotificationsDeleted.MAX_IDS]
            self.broker.publish(NotificationsDeleted(tuple(chunk)))

    def user_disabled(self, user_id: int) -> None:
        self.broker.publish(CloseUser(user_id, errors.ACCOUNT_DISABLED_CLOSE.message))

    # Events from the broker ------------------------------------------------------------
    def handle(self, event: Event) -> None:
        """Give an event to the handler of its type."""
        handler = self.handlers.get(type(event))
        if handler is None:
            log.warning("unknown broker event %r", event)
            return
        handler(event)

    def on_notification_sent(self, event: NotificationSent) -> None:
        """Write the announcement to every local socket of its recipients."""
        started = time.perf_counter()
        fanout = event.fanout or self.load_fanout(event.id)
        if fanout is None:
            return
        sockets = self.hub.deliver(fanout.user_ids, event.id, fanout.message)
        took_s = time.perf_counter() - started
        if sockets:  # once per broadcast, never per socket
            metrics.FANOUT_SECONDS.observe(took_s)
        log.info(
            "notification %d: written to %d sockets here in %.1f ms",
            event.id,
            sockets,
            took_s * 1000,
        )

    def load_fanout(self, notification_id: int) -> Fanout | None:
        """Another process's announcement, read from the database (only when a tab is
        open here; None when withdrawn, expired or gone)."""
        if not self.hub.by_user:
            return None
        with session_scope(self.app) as session:
            found = replay_service.message_and_recipients(session, notification_id)
        if found is None:
            return None
        row, user_ids = found
        return Fanout(tuple(user_ids), protocol.notification(row, row.author))

    def on_notification_changed(self, event: NotificationChanged) -> None:
        """Tell the local sockets of its recipients what changed; redraw its status."""
        self.status.mark(topics.notification_topic(event.id))
        if not self.hub.by_user:
            return
        change = event.change
        with session_scope(self.app) as session:
            row = replay_service.current(session, event.id)
            if row is None:
                return
            user_ids = replay_service.recipients(
                session, event.id, unconfirmed=change == NotificationChanged.REMIND
            )
        if change == NotificationChanged.RETRACT:
            message = protocol.retract(event.id)
        elif change == NotificationChanged.EXPIRE:
            message = protocol.expire(event.id)
        elif change == NotificationChanged.ALL_CLEAR:
            message = protocol.all_clear(event.id, row.all_clear_message or "", bool(row.drill))
        elif row.retracted_at is not None or row.all_clear_at is not None:
            return  # withdrawn or over since: that news went (or goes) out instead
        elif change == NotificationChanged.REMIND:
            message = protocol.reminder(row, row.author)
        else:
            message = protocol.update(
                row, row.author, reconfirm=change == NotificationChanged.RECONFIRM
            )
        sockets = self.hub.send_to_users(user_ids, message)
        log.info("notification %d %s: told %d sockets here", event.id, change, sockets)

    def on_receipts_recorded(self, event: ReceiptsRecorded) -> None:
        """Refresh the watched status of these announcements; tell the readers' other
        tabs what was seen."""
        for notification_id in event.notification_ids:
            self.status.mark(topics.notification_topic(notification_id))
        seen = event.seen
        if seen is None and event.read_since is not None and self.hub.by_user:
            with session_scope(self.app) as session:
                seen = receipts_service.seen_since(
                    session, event.notification_ids, event.read_since
                )
        for user_id, notification_id, state in seen or ():
            self.hub.send_to_user(user_id, protocol.receipt(notification_id, state))

    def on_close_user(self, event: CloseUser) -> None:
        self.hub.close_user(event.user_id, protocol.CLOSE_POLICY, event.reason)

    def on_notifications_deleted(self, event: NotificationsDeleted) -> None:
        """Tell local tabs to drop what was deleted; nothing is read: it is gone."""
        told = self.hub.forget(event.ids)
        if told:
            log.info("%d deleted announcements: told %d sockets here", len(event.ids), told)

    def on_presence_changed(self, event: PresenceChanged) -> None:
        self.presence.changed_elsewhere(event.process)

    def receipts_recorded(self, receipts: list[Receipt]) -> None:
        """Receipts were committed: every process refreshes the status of these
        announcements, and the recipient's other tabs drop what was read there."""
        seen = tuple(
            (r.user_id, r.notification_id, r.state.value)
            for r in receipts
            if r.state.rank >= DeliveryState.READ.rank
        )
        read_since = min(
            (r.at for r in receipts if r.state.rank >= DeliveryState.READ.rank), default=None
        )
        self.broker.publish(
            ReceiptsRecorded(tuple(sorted({r.notification_id for r in receipts})), read_since, seen)
        )

    def catch_up(self, whole_until: datetime | None) -> None:
        """The broker (re)subscribed: events committed elsewhere since the link was last
        known whole may never have arrived. Send the sockets here what they miss (each
        drops what it has): new announcements, and edits, withdrawals, all-clears and
        expiries of others; redraw the dashboards, close disabled users' sockets."""
        if not self.hub.count:
            return
        since = (whole_until or self.serving_since or utcnow()) - CATCH_UP_OVERLAP
        try:
            with session_scope(self.app) as session:
                missed = replay_service.missed_since(session, since)
                changed = replay_service.changed_since(session, since)
                disabled = users_service.inactive_ids(session) & set(self.hub.by_user)
        except SQLAlchemyError:
            log.exception("catching up after the broker came back failed")
            return
        for row, user_ids in missed:
            self.hub.deliver(user_ids, row.id, protocol.notification(row, row.author))
        for change, row, user_ids in changed:  # tabs drop what they have seen already
            self.hub.send_to_users(user_ids, protocol.change(change, row))
        for user_id in disabled:
            self.hub.close_user(
                user_id, protocol.CLOSE_POLICY, errors.ACCOUNT_DISABLED_CLOSE.message
            )
        for topic in self.hub.watched_topics():
            self.status.mark(topic)
        log.info(
            "caught up since %s: %d announcements, %d changed",
            since.isoformat(),
            len(missed),
            len(changed),
        )

    def hold_jobs(self) -> float:
        """Seconds until background jobs may start again: none start right after a
        broadcast began here, so it reaches the open tabs first."""
        return self.hold_jobs_s - self.hub.quiet_for()

    def jobs_finished(self, notification_ids: set[int]) -> None:
        """Pushes or e-mails of these announcements went out: refresh their status."""
        self.broker.publish(ReceiptsRecorded(tuple(sorted(notification_ids)), None, ()))

    def _presence_changed(self, user_id: int) -> None:
        self.presence.changed(user_id)
        self.status.mark_online()

    # Process life ----------------------------------------------------------------------
    def serve(self) -> None:
        """This process is a server worker (not a test or a CLI command): listen to the
        other processes, share presence, run jobs, tune garbage collection for
        thousands of long-lived sockets."""
        self.serving_since = utcnow()
        self.broker.serve(self.catch_up)
        self.presence.serve(self.broker.process)
        if self.app.config["GC_FREEZE"]:
            self.heap.start()
        if self.app.config["JOBS_IN_PROCESS"]:
            self.jobs = JobRunner(
                self.app, on_finished=self.jobs_finished, hold=self.hold_jobs
            ).start()

    def epoch(self) -> str:
        """This database's epoch (read once): clients compare it to notice a reset."""
        if self._epoch is None:
            with session_scope(self.app) as session:
                self._epoch = session.scalar(select(Installation.epoch).limit(1)) or "0"
        return self._epoch

    def shutdown(self) -> int:
        """Close every socket with 1001 at once and write pending receipts."""
        closed = self.hub.close_all(protocol.CLOSE_GOING_AWAY, "server restarting")
        if self.jobs is not None:
            self.jobs.stop()
        self.heap.stop()
        self.receipts.flush()
        self.presence.stop()
        self.broker.stop()
        return closed


def init_app(app: Flask) -> None:
    # Every process that sends needs what a send queues besides deliveries (expiry,
    # reminders: notifications.AFTER_SEND), registered by the job handlers' modules.
    load_job_handlers()
    app.extensions["schoolbell.live"] = Live(app)


def live() -> Live:
    """The current app's realtime runtime."""
    return current_app.extensions["schoolbell.live"]
