"""Re-keying: the account key's generation (cm_accounts.generation) and the sealed data
keys of earlier generations (cm_data_keys). Existing accounts are generation 0 with no
rows; their slots stay version 1 until used (docs/security.md).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cm_accounts") as batch:
        batch.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "cm_data_keys",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sealed", sa.LargeBinary(64), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["virtual_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "generation"),
    )


def downgrade() -> None:
    op.drop_table("cm_data_keys")
    with op.batch_alter_table("cm_accounts") as batch:
        batch.drop_column("generation")
