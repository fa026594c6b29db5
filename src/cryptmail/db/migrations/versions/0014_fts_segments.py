"""The full-text search index: sealed segments per user (docs/security.md, "Search
index"). Starts empty; sessions build it.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "cm_fts_segments",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.LargeBinary(length=16), nullable=False),
        sa.Column("sealed", sa.LargeBinary(length=16 * 1024 * 1024), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["virtual_users.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_cm_fts_segments_user", "cm_fts_segments", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_cm_fts_segments_user", table_name="cm_fts_segments")
    op.drop_table("cm_fts_segments")
