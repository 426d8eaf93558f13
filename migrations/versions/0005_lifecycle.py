"""The whole life of an announcement: scheduled sends, revisions (edits), confirmation
deadlines and reminders, drills, roll-call answers, all-clears; emergency templates.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create notification_revisions and emergency_templates; add the new columns. Every
    announcement sent so far was sent when it was made, as its first revision."""
    op.create_table(
        "emergency_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("all_clear", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["users.id"],
            name=op.f("fk_emergency_templates_updated_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emergency_templates")),
        sa.UniqueConstraint("key", name=op.f("uq_emergency_templates_key")),
    )
    op.create_table(
        "notification_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column(
            "priority",
            sa.Enum(
                "normal",
                "urgent",
                "emergency",
                name="revision_priority",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("require_ack", sa.Boolean(), nullable=False),
        sa.Column("link", sa.String(length=2048), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reconfirm", sa.Boolean(), nullable=False),
        sa.Column("editor_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["editor_id"],
            ["users.id"],
            name=op.f("fk_notification_revisions_editor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_notification_revisions_notification_id_notifications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_revisions")),
        sa.UniqueConstraint(
            "notification_id",
            "revision",
            name=op.f("uq_notification_revisions_notification_id_revision"),
        ),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "answer",
                sa.Enum(
                    "safe",
                    "help",
                    name="delivery_answer",
                    native_enum=False,
                    create_constraint=True,
                    length=16,
                ),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("answer_text", sa.String(length=280), nullable=True))
        batch_op.add_column(sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("send_error", sa.String(length=500), nullable=True))
        batch_op.add_column(
            sa.Column("revision", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )
        batch_op.add_column(sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("confirm_by", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("remind_at", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("drill", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("all_clear_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("all_clear_message", sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f("ix_notifications_sent_at"), ["sent_at"], unique=False)

    notifications = sa.table(
        "notifications",
        sa.column("id", sa.Integer),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("sent_at", sa.DateTime(timezone=True)),
    )
    op.execute(notifications.update().values(sent_at=notifications.c.created_at))
    op.execute(
        "INSERT INTO notification_revisions (notification_id, revision, title, body,"
        " body_html, priority, require_ack, link, expires_at, reconfirm, editor_id,"
        " created_at) SELECT id, 1, title, body, body_html, priority, require_ack, link,"
        " expires_at, false, author_id, created_at FROM notifications"
    )


def downgrade() -> None:
    """Drop what upgrade() added."""
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_sent_at"))
        batch_op.drop_column("all_clear_message")
        batch_op.drop_column("all_clear_at")
        batch_op.drop_column("drill")
        batch_op.drop_column("remind_at")
        batch_op.drop_column("confirm_by")
        batch_op.drop_column("edited_at")
        batch_op.drop_column("revision")
        batch_op.drop_column("send_error")
        batch_op.drop_column("sent_at")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("delivery_answer", type_="check")
        batch_op.drop_column("answered_at")
        batch_op.drop_column("answer_text")
        batch_op.drop_column("answer")
        batch_op.drop_column("reminded_at")

    op.drop_table("notification_revisions")
    op.drop_table("emergency_templates")
