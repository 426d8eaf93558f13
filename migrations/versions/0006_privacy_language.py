"""Data protection and languages: a person may be erased (their name and e-mail
removed, their receipts kept anonymously), and a person's language may be unset (then
the browser's Accept-Language decides, else the school's default).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """users.erased_at; users.language nullable. Until now every person got "en" when
    nobody chose one, so "en" is taken as "not chosen": their browser decides now."""
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column("language", existing_type=sa.String(length=16), nullable=True)
    op.execute("UPDATE users SET language = NULL WHERE language = 'en'")


def downgrade() -> None:
    """Drop erased_at; a person without a language gets "en" again."""
    op.execute("UPDATE users SET language = 'en' WHERE language IS NULL")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("language", existing_type=sa.String(length=16), nullable=False)
        batch_op.drop_column("erased_at")
