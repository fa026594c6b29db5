"""Per-mailbox usage counter (cm_mailboxes.used_bytes), filled from the messages.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "cm_mailboxes",
        sa.Column("used_bytes", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.execute(
        "UPDATE cm_mailboxes SET used_bytes = (SELECT COALESCE(SUM(m.size_rounded), 0) "
        "FROM cm_messages m WHERE m.mailbox_id = cm_mailboxes.id)"
    )


def downgrade() -> None:
    op.drop_column("cm_mailboxes", "used_bytes")
