"""Per-user UIDVALIDITY counter (cm_uidvalidity), started at the user's highest value.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cm_uidvalidity",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("last_value", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["virtual_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.execute(
        "INSERT INTO cm_uidvalidity (user_id, last_value) "
        "SELECT user_id, MAX(uidvalidity) FROM cm_mailboxes GROUP BY user_id"
    )


def downgrade() -> None:
    op.drop_table("cm_uidvalidity")
