"""The save date of each message row (RFC 8514 SAVEDATE): cm_messages.saved_at, set
when a row is inserted (delivery, APPEND, COPY, MOVE, import). Rows from before stay
NULL and answer SAVEDATE NIL; their date is not known.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cm_messages") as batch:
        batch.add_column(sa.Column("saved_at", sa.DateTime(timezone=False), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cm_messages") as batch:
        batch.drop_column("saved_at")
