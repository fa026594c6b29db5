"""The change log (cm_changes) that carries new mail, flag changes, expunges, mailbox
changes and credential changes to every node, and the login throttle's shared failure
buckets (cm_login_failures). Both start empty; nothing to convert.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_KEY16 = sa.LargeBinary(16).with_variant(mysql.VARBINARY(16), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "cm_changes",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
    )
    op.create_table(
        "cm_login_failures",
        sa.Column("key_hash", _KEY16, primary_key=True),
        sa.Column("full_at", sa.Double(), nullable=False),
    )
    op.create_index("ix_cm_login_failures_full_at", "cm_login_failures", ["full_at"])


def downgrade() -> None:
    op.drop_index("ix_cm_login_failures_full_at", table_name="cm_login_failures")
    op.drop_table("cm_login_failures")
    op.drop_table("cm_changes")
