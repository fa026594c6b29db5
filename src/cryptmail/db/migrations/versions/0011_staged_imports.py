"""Imports staged for a user's first login (`import maildir --at-first-login`): the
state and counts in plain, where the Maildir is sealed under the server key; and the
blobs a staged import wrote before the login places them (cm_staged_blobs).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# MariaDB refuses a BLOB column in a primary key; 16 fixed bytes fit VARBINARY.
_KEY16 = sa.LargeBinary(16).with_variant(mysql.VARBINARY(16), "mysql", "mariadb")

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cm_staged_imports",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("virtual_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source_sealed", sa.LargeBinary(16 * 1024 * 1024), nullable=False),
        sa.Column("done_messages", sa.Integer(), nullable=False),
        sa.Column("total_messages", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=False), nullable=False),
    )
    op.create_index("ix_cm_staged_imports_user", "cm_staged_imports", ["user_id"])
    op.create_table(
        "cm_staged_blobs",
        sa.Column(
            "staged_id",
            sa.Integer(),
            sa.ForeignKey("cm_staged_imports.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("blob_id", _KEY16, primary_key=True),
    )
    op.create_index("ix_cm_staged_blobs_blob", "cm_staged_blobs", ["blob_id"])


def downgrade() -> None:
    op.drop_index("ix_cm_staged_blobs_blob", "cm_staged_blobs")
    op.drop_table("cm_staged_blobs")
    op.drop_index("ix_cm_staged_imports_user", "cm_staged_imports")
    op.drop_table("cm_staged_imports")
