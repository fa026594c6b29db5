"""Credential generation per account (cm_accounts.credential_generation), for the login
cache: every password change, recovery, app-password revocation and key rotation bumps
it, so each process drops its cached logins of that user.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "cm_accounts",
        sa.Column("credential_generation", sa.BigInteger(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("cm_accounts", "credential_generation")
