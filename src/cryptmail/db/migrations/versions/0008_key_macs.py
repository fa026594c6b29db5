"""Authenticated key rows: the MAC of an account's key rows under its account key
(cm_accounts.key_mac, with the slot list it covers in key_mac_slots) and the MAC of what
delivery reads under the server key (cm_accounts.delivery_mac). Existing accounts get
them at their first unlock after this migration (docs/security.md).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cm_accounts") as batch:
        batch.add_column(sa.Column("key_mac", sa.LargeBinary(32), nullable=True))
        batch.add_column(sa.Column("key_mac_slots", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("delivery_mac", sa.LargeBinary(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cm_accounts") as batch:
        batch.drop_column("delivery_mac")
        batch.drop_column("key_mac_slots")
        batch.drop_column("key_mac")
