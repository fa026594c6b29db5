"""Per-mailbox message counter (cm_mailboxes.message_count) for the MESSAGE quota
resource, filled from the messages.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "cm_mailboxes",
        sa.Column("message_count", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.execute(
        "UPDATE cm_mailboxes SET message_count = (SELECT COUNT(*) "
        "FROM cm_messages m WHERE m.mailbox_id = cm_mailboxes.id)"
    )


def downgrade() -> None:
    op.drop_column("cm_mailboxes", "message_count")
