"""Sieve records: vacation replies sent and ids duplicate tests saw, as keyed hashes
under the server key with an expiry (cm_sieve_records).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cm_sieve_records",
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("virtual_users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        # VARBINARY: MariaDB refuses a BLOB column in a primary key.
        sa.Column(
            "record",
            sa.LargeBinary(length=32).with_variant(mysql.VARBINARY(32), "mysql", "mariadb"),
            primary_key=True,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=False), nullable=False),
    )
    op.create_index("ix_cm_sieve_records_expires", "cm_sieve_records", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_cm_sieve_records_expires", table_name="cm_sieve_records")
    op.drop_table("cm_sieve_records")
