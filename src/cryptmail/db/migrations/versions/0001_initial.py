"""Initial schema: the ISPmail tables (only where missing) and cryptmail's own.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ispmail_tables() -> None:
    """Create what an existing ISPmail database lacks; never touch its rows."""
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    if "virtual_domains" not in existing:
        op.create_table(
            "virtual_domains",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("name", sa.String(length=50), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("name"),
        )
    if "virtual_aliases" not in existing:
        op.create_table(
            "virtual_aliases",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("domain_id", sa.Integer(), nullable=False),
            sa.Column("source", sa.String(length=100), nullable=False),
            sa.Column("destination", sa.String(length=100), nullable=False),
            sa.ForeignKeyConstraint(["domain_id"], ["virtual_domains.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
        )
    if "virtual_users" not in existing:
        op.create_table(
            "virtual_users",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("domain_id", sa.Integer(), nullable=False),
            sa.Column("email", sa.String(length=100), nullable=False),
            sa.Column("password", sa.String(length=150), nullable=False),
            sa.Column("quota", sa.BigInteger(), server_default="0", nullable=False),
            sa.Column("crypt", sa.SmallInteger(), server_default="0", nullable=False),
            sa.ForeignKeyConstraint(["domain_id"], ["virtual_domains.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("email"),
        )
    # Older ISPmail guides have neither column; add them with their defaults.
    columns = {c["name"] for c in inspector.get_columns("virtual_users")}
    with op.batch_alter_table("virtual_users") as batch:
        if "quota" not in columns:
            batch.add_column(
                sa.Column("quota", sa.BigInteger(), server_default="0", nullable=False)
            )
        if "crypt" not in columns:
            batch.add_column(
                sa.Column("crypt", sa.SmallInteger(), server_default="0", nullable=False)
            )


def upgrade() -> None:
    _ispmail_tables()
    op.create_table(
        "cm_accounts",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("account_uuid", sa.LargeBinary(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("used_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["virtual_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
        sa.UniqueConstraint("account_uuid"),
    )
    op.create_table(
        "cm_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state_sealed", sa.LargeBinary(length=16777216), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["virtual_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "cm_key_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("detail_sealed", sa.LargeBinary(length=1024), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["virtual_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_cm_key_events_user", "cm_key_events", ["user_id", "at"], unique=False)
    op.create_table(
        "cm_key_pairs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.LargeBinary(length=32), nullable=False),
        sa.Column("curve", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=256), nullable=False),
        sa.Column("private_sealed", sa.LargeBinary(length=1024), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["virtual_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_id"),
    )
    op.create_index("ix_cm_key_pairs_user", "cm_key_pairs", ["user_id"], unique=False)
    op.create_table(
        "cm_key_slots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), server_default="", nullable=False),
        sa.Column("lookup_id", sa.LargeBinary(length=16), nullable=True),
        sa.Column("record", sa.LargeBinary(length=256), nullable=False),
        sa.Column("hash_fingerprint", sa.LargeBinary(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["virtual_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("lookup_id"),
        sa.UniqueConstraint("user_id", "kind", "name", name="uq_cm_key_slots_user_kind_name"),
    )
    op.create_table(
        "cm_mailboxes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("name_sealed", sa.LargeBinary(length=2048), nullable=True),
        sa.Column("name_lookup", sa.LargeBinary(length=32), nullable=True),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uidnext", sa.BigInteger(), nullable=False),
        sa.Column("highest_modseq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["virtual_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "name_lookup", name="uq_cm_mailboxes_user_name"),
        sa.UniqueConstraint("user_id", "role", name="uq_cm_mailboxes_user_role"),
    )
    op.create_table(
        "cm_user_settings",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value_sealed", sa.LargeBinary(length=16777216), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["virtual_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "name"),
    )
    op.create_table(
        "cm_expunged",
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], ["cm_mailboxes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("mailbox_id", "uid"),
    )
    op.create_table(
        "cm_messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.Column("blob_id", sa.LargeBinary(length=16), nullable=False),
        sa.Column("sealed", sa.Boolean(), nullable=False),
        sa.Column("size_rounded", sa.BigInteger(), nullable=False),
        sa.Column("internal_date", sa.DateTime(), nullable=False),
        sa.Column("flags_sealed", sa.LargeBinary(length=4096), nullable=True),
        sa.Column("cache_sealed", sa.LargeBinary(length=16777216), nullable=True),
        sa.Column("delivery_tag", sa.LargeBinary(length=16), nullable=True),
        sa.ForeignKeyConstraint(["mailbox_id"], ["cm_mailboxes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mailbox_id", "uid", name="uq_cm_messages_mailbox_uid"),
    )
    op.create_index("ix_cm_messages_blob", "cm_messages", ["blob_id"], unique=False)
    op.create_index("ix_cm_messages_delivery_tag", "cm_messages", ["delivery_tag"], unique=False)
    op.create_index(
        "ix_cm_messages_mailbox_modseq", "cm_messages", ["mailbox_id", "modseq"], unique=False
    )


def downgrade() -> None:
    # The ISPmail tables stay: they belong to the admin's existing setup.
    for table in (
        "cm_jobs",
        "cm_user_settings",
        "cm_expunged",
        "cm_messages",
        "cm_mailboxes",
        "cm_key_events",
        "cm_key_slots",
        "cm_key_pairs",
        "cm_accounts",
    ):
        op.drop_table(table)
