"""Sieve filing notes (cm_filing_notes): where a message Sieve filed into a folder of
the user's own goes, sealed to the user's public key, until a session files it.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cm_filing_notes",
        sa.Column(
            "message_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("cm_messages.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("virtual_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("note_sealed", sa.LargeBinary(length=8192), nullable=False),
    )
    op.create_index("ix_cm_filing_notes_user", "cm_filing_notes", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_cm_filing_notes_user", table_name="cm_filing_notes")
    op.drop_table("cm_filing_notes")
