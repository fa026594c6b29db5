"""IMAP subscriptions, sealed like folder names.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cm_subscriptions",
        sa.Column("user_id", sa.Integer(), nullable=False),
        # VARBINARY: MariaDB refuses a BLOB column in a primary key.
        sa.Column(
            "name_lookup",
            sa.LargeBinary(length=32).with_variant(mysql.VARBINARY(32), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column("name_sealed", sa.LargeBinary(length=2048), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["virtual_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "name_lookup"),
    )


def downgrade() -> None:
    op.drop_table("cm_subscriptions")
