"""Sort key records: cm_sort_chunks, a mailbox's SORT/THREAD keys in sealed chunks of
UIDs (docs/security.md, "Sort key records"). Starts empty; sessions fill it.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cm_sort_chunks",
        sa.Column(
            "mailbox_id",
            sa.Integer(),
            sa.ForeignKey("cm_mailboxes.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("chunk", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(length=16 * 1024 * 1024), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cm_sort_chunks")
