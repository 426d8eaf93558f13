"""The data model: people, classes, announcements and their deliveries, tokens, audit,
push subscriptions, signed links and the job queue."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import Mapped, WriteOnlyMapped, mapped_column, relationship

from .db import Base, UTCDateTime, utcnow


class Role(enum.StrEnum):
    """What a user is at the school; decides what they may do."""

    ADMIN = "admin"
    TEACHER = "teacher"
    STUDENT = "student"
    GUARDIAN = "guardian"

    @property
    def is_staff(self) -> bool:
        return self in (Role.ADMIN, Role.TEACHER)


class MemberRole(enum.StrEnum):
    """How a user belongs to a class."""

    STUDENT = "student"
    TEACHER = "teacher"


class Priority(enum.StrEnum):
    NORMAL = "normal"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class DeliveryState(enum.StrEnum):
    """Receipt states; they only ever move forward in this order."""

    PENDING = "pending"
    DELIVERED = "delivered"
    READ = "read"
    ACKNOWLEDGED = "acknowledged"

    @property
    def rank(self) -> int:
        return list(DeliveryState).index(self)


class Channel(enum.StrEnum):
    """How an announcement first reached a recipient."""

    TAB = "tab"  # an open tab (or the inbox page) reported it
    PUSH = "push"  # the service worker on a device reported a Web Push
    EMAIL = "email"  # a signed link from the e-mail was opened


class JobState(enum.StrEnum):
    QUEUED = "queued"  # waiting for its due time, or leased by a runner
    DONE = "done"
    FAILED = "failed"  # gave up: a permanent error, or out of attempts
    CANCELLED = "cancelled"  # no longer needed (a receipt came first, ...)


class Answer(enum.StrEnum):
    """A recipient's answer to an emergency's roll call."""

    SAFE = "safe"
    HELP = "help"


class TargetKind(enum.StrEnum):
    USER = "user"
    CLASS = "class"
    ROLE = "role"
    EVERYONE = "everyone"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    """A portable enum column: VARCHAR + CHECK, values (not names) stored."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
    )


class Installation(Base):
    """One row: this database's identity. A new epoch means a new (or reset) database,
    so clients holding ids from the old one must start over instead of waiting."""

    __tablename__ = "installations"

    id: Mapped[int] = mapped_column(primary_key=True)
    epoch: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<Installation {self.epoch}>"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-case
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"), index=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # None: not chosen; the browser's Accept-Language decides, else the school's default.
    language: Mapped[str | None] = mapped_column(String(16))
    # Channels this person wants besides open tabs; emergencies ignore both.
    push_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    email_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Bumped on deactivation or password change: every older session stops working.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    # Set when the person was erased (data protection): name and e-mail are gone, their
    # receipts stay, anonymous, in the counts.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )
    deliveries: WriteOnlyMapped[Delivery] = relationship(back_populates="user")

    # flask-login protocol -------------------------------------------------------
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """Session identity: id and epoch, so bumping the epoch ends old sessions."""
        return f"{self.id}:{self.session_epoch}"

    @property
    def is_staff(self) -> bool:
        return self.role.is_staff

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email} {self.role}>"


class SchoolClass(Base):
    __tablename__ = "school_classes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="school_class", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<SchoolClass {self.id} {self.name}>"


class Membership(Base):
    """A student or teacher of a class."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("class_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("school_classes.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[MemberRole] = mapped_column(_enum(MemberRole, "member_role"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    school_class: Mapped[SchoolClass] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship(back_populates="memberships")

    def __repr__(self) -> str:
        return f"<Membership {self.user_id} {self.role} of {self.class_id}>"


class Guardianship(Base):
    """A guardian of a student."""

    __tablename__ = "guardianships"
    __table_args__ = (
        UniqueConstraint("guardian_id", "student_id"),
        CheckConstraint("guardian_id <> student_id", name="not_self"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    guardian_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    student_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    guardian: Mapped[User] = relationship(foreign_keys=[guardian_id])
    student: Mapped[User] = relationship(foreign_keys=[student_id])

    def __repr__(self) -> str:
        return f"<Guardianship {self.guardian_id} of {self.student_id}>"


class Notification(Base):
    """An announcement; its audience is frozen into deliveries when it is sent."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("author_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)  # Markdown as written
    body_html: Mapped[str] = mapped_column(Text)  # rendered and sanitised
    priority: Mapped[Priority] = mapped_column(_enum(Priority, "priority"))
    require_ack: Mapped[bool] = mapped_column(Boolean, default=False)
    link: Mapped[str | None] = mapped_column(String(2048))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # SHA-256 of the cleaned request: a key reused for a different request is refused.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    recipient_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Scheduled: `send_at` set and `sent_at` still None; the audience is resolved (and
    # the deliveries written) when it goes. Sent at once: both equal `created_at`.
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Why a scheduled send could not go (the author may no longer reach the audience).
    send_error: Mapped[str | None] = mapped_column(String(500))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Withdrawn after sending, or cancelled before (sent_at None).
    retracted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Edits: the current revision's content is in the columns above; every revision,
    # the first included, is a NotificationRevision.
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Confirmation deadline, and the times reminders go to those who have not confirmed
    # (ISO 8601 strings, UTC, sorted).
    confirm_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    remind_at: Mapped[list[str] | None] = mapped_column(JSON)
    # Emergencies: a drill is shown (and counted) as one; an all-clear ends it.
    drill: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    all_clear_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    all_clear_message: Mapped[str | None] = mapped_column(Text)

    author: Mapped[User | None] = relationship()
    targets: Mapped[list[Target]] = relationship(
        back_populates="notification", cascade="all, delete-orphan"
    )
    deliveries: WriteOnlyMapped[Delivery] = relationship(
        back_populates="notification", passive_deletes=True
    )
    revisions: Mapped[list[NotificationRevision]] = relationship(
        back_populates="notification",
        cascade="all, delete-orphan",
        order_by="NotificationRevision.revision",
    )

    @property
    def is_scheduled(self) -> bool:
        """Waiting for its send time (neither sent nor cancelled)."""
        return self.sent_at is None and self.retracted_at is None

    def __repr__(self) -> str:
        return f"<Notification {self.id} {self.title!r}>"


class NotificationRevision(Base):
    """One version of an announcement's content, as it was sent or edited. Append-only."""

    __tablename__ = "notification_revisions"
    __table_args__ = (UniqueConstraint("notification_id", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    priority: Mapped[Priority] = mapped_column(_enum(Priority, "revision_priority"))
    require_ack: Mapped[bool] = mapped_column(Boolean, default=False)
    link: Mapped[str | None] = mapped_column(String(2048))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A material change: confirmations started again with this revision.
    reconfirm: Mapped[bool] = mapped_column(Boolean, default=False)
    editor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    notification: Mapped[Notification] = relationship(back_populates="revisions")
    editor: Mapped[User | None] = relationship()

    @classmethod
    def of(
        cls, notification: Notification, *, editor_id: int | None, reconfirm: bool, at: datetime
    ) -> NotificationRevision:
        """The announcement's current content, as its revision `notification.revision`."""
        return cls(
            revision=notification.revision,
            title=notification.title,
            body=notification.body,
            body_html=notification.body_html,
            priority=notification.priority,
            require_ack=notification.require_ack,
            link=notification.link,
            expires_at=notification.expires_at,
            reconfirm=reconfirm,
            editor_id=editor_id,
            created_at=at,
        )

    def __repr__(self) -> str:
        return f"<NotificationRevision {self.notification_id}r{self.revision}>"


class Target(Base):
    """One part of a notification's audience expression, as the author chose it."""

    __tablename__ = "targets"

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[TargetKind] = mapped_column(_enum(TargetKind, "target_kind"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    class_id: Mapped[int | None] = mapped_column(
        ForeignKey("school_classes.id", ondelete="SET NULL")
    )
    role: Mapped[Role | None] = mapped_column(_enum(Role, "target_role"))
    # For class targets: which members, e.g. ["students", "guardians"].
    audience: Mapped[list[str] | None] = mapped_column(JSON)

    notification: Mapped[Notification] = relationship(back_populates="targets")

    def __repr__(self) -> str:
        return f"<Target {self.kind} of {self.notification_id}>"


class Delivery(Base):
    """One recipient of one notification, with a timestamp per receipt state."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("notification_id", "user_id"),
        Index("ix_deliveries_user_id_notification_id", "user_id", "notification_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    state: Mapped[DeliveryState] = mapped_column(
        _enum(DeliveryState, "delivery_state"), default=DeliveryState.PENDING
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How it first reached them (set with the first receipt), and when a push service
    # accepted a push or the mail server an e-mail for it (sent is not yet seen).
    channel: Mapped[Channel | None] = mapped_column(_enum(Channel, "delivery_channel"))
    pushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last reminder sent to this recipient (confirmation deadlines).
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Emergency roll call: "I'm safe" or "I need help", with an optional short text.
    answer: Mapped[Answer | None] = mapped_column(_enum(Answer, "delivery_answer"))
    answer_text: Mapped[str | None] = mapped_column(String(280))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    notification: Mapped[Notification] = relationship(back_populates="deliveries")
    user: Mapped[User] = relationship(back_populates="deliveries")

    def __repr__(self) -> str:
        return f"<Delivery {self.notification_id}->{self.user_id} {self.state}>"


class EmergencyTemplate(Base):
    """A prepared emergency announcement (lockdown, evacuation, ...), editable by admins."""

    __tablename__ = "emergency_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)  # e.g. "lockdown"
    name: Mapped[str] = mapped_column(String(100))  # shown on the button
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)  # Markdown
    # The all-clear template is not an emergency itself: it is the all-clear's text.
    all_clear: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<EmergencyTemplate {self.key}>"


class ApiToken(Base):
    """A bearer token for the JSON API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in lists, to recognise it
    # The API acts as this user (an admin unless narrowed), for permissions and audit.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"<ApiToken {self.id} {self.name} {self.prefix}...>"


class AuditEvent(Base):
    """Who did what, when, from where. Append-only."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    action: Mapped[str] = mapped_column(String(64), index=True)  # e.g. "signin.failed"
    subject: Mapped[str | None] = mapped_column(String(300))  # e.g. "user:ann@school.test"
    address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    actor: Mapped[User | None] = relationship()

    def __repr__(self) -> str:
        return f"<AuditEvent {self.id} {self.action} {self.subject}>"


class PushSubscription(Base):
    """A browser's Web Push subscription (RFC 8030): where to POST, and its keys for
    encrypting the body (RFC 8291)."""

    __tablename__ = "push_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    endpoint: Mapped[str] = mapped_column(String(1024), unique=True)
    p256dh: Mapped[str] = mapped_column(String(128))  # the browser's P-256 key, base64url
    auth: Mapped[str] = mapped_column(String(64))  # its 16-byte auth secret, base64url
    user_agent: Mapped[str | None] = mapped_column(String(300))  # to name the device
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # in a row, reset on success

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"<PushSubscription {self.id} of {self.user_id}>"


class UsedLink(Base):
    """A signed single-use link (from an e-mail) that has been used: its nonce."""

    __tablename__ = "used_links"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<UsedLink {self.purpose} {self.nonce[:8]}...>"


class Job(Base):
    """A unit of background work (a push, an e-mail, a fan-out of those), due at a time.

    `key` is unique, so the same work can only be queued once. A runner leases a due job
    (`leased_until`) before it runs it, so a crashed runner's jobs come back; finished
    jobs stay (done, failed, cancelled) as the record of what was sent."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index(
            "ix_jobs_due",
            "due_at",
            postgresql_where=text("state = 'queued'"),
            sqlite_where=text("state = 'queued'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"), default=JobState.QUEUED)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notification_id: Mapped[int | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    # A removed device keeps the record of what was pushed to it; its queued pushes
    # are cancelled when they come up (services/push.py).
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("push_subscriptions.id", ondelete="SET NULL"), index=True
    )
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.key} {self.state}>"
