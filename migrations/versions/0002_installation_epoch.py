"""Installation epoch: identifies this database, so clients notice a reset.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the installations table with this database's epoch."""
    installations = op.create_table(
        "installations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installations")),
    )
    op.bulk_insert(installations, [
        {"id": 1, "epoch": uuid.uuid4().hex, "created_at": datetime.now(UTC)},
    ])


def downgrade() -> None:
    """Drop the installations table."""
    op.drop_table("installations")
