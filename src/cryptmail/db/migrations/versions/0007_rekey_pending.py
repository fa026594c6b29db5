"""A re-key owed to an account (cm_accounts.rekey_pending): an app password revoked
without the unlocked key (an admin on the command line, a signed-in web page, which
holds no key) deletes its slot at once, and the next login that opens the account key
re-keys it (keys/_rekey.py).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cm_accounts") as batch:
        batch.add_column(
            sa.Column("rekey_pending", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("cm_accounts") as batch:
        batch.drop_column("rekey_pending")
