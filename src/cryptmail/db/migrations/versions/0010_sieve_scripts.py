"""Users' Sieve scripts, sealed under a subkey of the server key (ManageSieve).

Revision ID: 0010
Revises: 0009 (the brief's 0009; after the sieve branch's 0009_sieve_records in this
merge, the lead renumbers the chain)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cm_sieve_scripts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        # VARBINARY: MariaDB refuses a BLOB column in a unique key.
        sa.Column(
            "name_lookup",
            sa.LargeBinary(length=32).with_variant(mysql.VARBINARY(32), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column("name_sealed", sa.LargeBinary(length=2048), nullable=False),
        sa.Column("body_sealed", sa.LargeBinary(length=16 * 1024 * 1024), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=False), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["virtual_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "name_lookup", name="uq_cm_sieve_scripts_user_name"),
    )


def downgrade() -> None:
    op.drop_table("cm_sieve_scripts")
