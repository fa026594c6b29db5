"""URLAUTH grants (RFC 4467): cm_url_grants, one row per URL, found by a hash of the
URL's token and sealed under a key derived from it.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cm_url_grants",
        # VARBINARY: MariaDB refuses a BLOB column in a primary key.
        sa.Column(
            "lookup",
            sa.LargeBinary(length=32).with_variant(mysql.VARBINARY(32), "mysql", "mariadb"),
            primary_key=True,
        ),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("virtual_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "mailbox_tag",
            sa.LargeBinary(length=16).with_variant(mysql.VARBINARY(16), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column("grant_sealed", sa.LargeBinary(length=4096), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=False), nullable=True),
    )
    op.create_index("ix_cm_url_grants_user", "cm_url_grants", ["user_id"])
    op.create_index("ix_cm_url_grants_expires", "cm_url_grants", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_cm_url_grants_expires", table_name="cm_url_grants")
    op.drop_index("ix_cm_url_grants_user", table_name="cm_url_grants")
    op.drop_table("cm_url_grants")
