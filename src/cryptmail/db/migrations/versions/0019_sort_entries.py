"""Sort entries from delivery: cm_sort_epochs (a delivery process's epoch key, wrapped
to the user's public key) and cm_sort_entries (a message's sort fields sealed under
one), docs/security.md "Sort entries from delivery". Start empty; delivery fills them.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cm_sort_epochs",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("virtual_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key_id", sa.LargeBinary(length=32), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(length=512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
    )
    op.create_index("ix_cm_sort_epochs_user", "cm_sort_epochs", ["user_id"])
    op.create_table(
        "cm_sort_entries",
        sa.Column(
            "message_id",
            _BIG_ID,
            sa.ForeignKey("cm_messages.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("epoch_id", sa.BigInteger(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(length=16 * 1024 * 1024), nullable=False),
    )
    op.create_index("ix_cm_sort_entries_epoch", "cm_sort_entries", ["epoch_id"])


def downgrade() -> None:
    op.drop_index("ix_cm_sort_entries_epoch", table_name="cm_sort_entries")
    op.drop_table("cm_sort_entries")
    op.drop_index("ix_cm_sort_epochs_user", table_name="cm_sort_epochs")
    op.drop_table("cm_sort_epochs")
