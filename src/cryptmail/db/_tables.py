"""Every table, as SQLAlchemy Core.

The three ISPmail tables are kept as the guide creates them (plus `crypt` and `quota`),
so Postfix's and other tools' queries keep working. Our own tables start with `cm_`.
Columns that carry meaning are sealed (`*_sealed`, see docs/security.md); only ids,
UIDs, modseqs, rounded sizes, dates and the fixed SPECIAL-USE role are plain.
"""

from __future__ import annotations

from sqlalchemy import (
    VARBINARY,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    false,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
_BLOB = LargeBinary(16 * 1024 * 1024)  # MEDIUMBLOB on MariaDB; BLOB caps at 64 KiB
# MariaDB refuses a BLOB column in a primary key; a fixed-width digest fits VARBINARY
# (SQLAlchemy's own, which `sqlalchemy.dialects.mysql` re-exports: importing that
# package loads the whole MySQL dialect, about 1 MiB in every server process).
_DIGEST = LargeBinary(32).with_variant(VARBINARY(32), "mysql", "mariadb")
_KEY16 = LargeBinary(16).with_variant(VARBINARY(16), "mysql", "mariadb")

virtual_domains = Table(
    "virtual_domains",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(50), nullable=False, unique=True),
)

virtual_users = Table(
    "virtual_users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "domain_id",
        Integer,
        ForeignKey("virtual_domains.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("email", String(100), nullable=False, unique=True),
    Column("password", String(150), nullable=False),
    Column("quota", BigInteger, nullable=False, server_default="0"),
    Column("crypt", SmallInteger, nullable=False, server_default="0"),
)

virtual_aliases = Table(
    "virtual_aliases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "domain_id",
        Integer,
        ForeignKey("virtual_domains.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("source", String(100), nullable=False),
    Column("destination", String(100), nullable=False),
)

# One row per user that has keys. `account_uuid` binds slots to the account, so a slot
# copied to another account fails; it survives a change of virtual_users.id on migration.
cm_accounts = Table(
    "cm_accounts",
    metadata,
    Column(
        "user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("account_uuid", LargeBinary(16), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=False), nullable=False),
    Column("used_bytes", BigInteger, nullable=False, server_default="0"),
    # Bumped by every change that must end cached logins (keys/_generation.py).
    Column("credential_generation", BigInteger, nullable=False, server_default="0"),
    # Bumped by every re-key (password change, recovery, revocation, rotation): the
    # generation of the account key the slots hold now.
    Column("generation", Integer, nullable=False, server_default="0"),
    # Set when a slot was deleted without the account key to re-key (an app password
    # revoked by an admin): the next login that opens the key re-keys (keys/_rekey.py).
    Column("rekey_pending", Boolean, nullable=False, server_default=false()),
    # Authenticated key rows (keys/_integrity.py): the MAC under the account key, the
    # slot list it covers, and the MAC under the server key that delivery checks. NULL
    # until the first unlock after migration 0008 (docs/security.md).
    Column("key_mac", LargeBinary(32), nullable=True),
    Column("key_mac_slots", LargeBinary, nullable=True),
    Column("delivery_mac", LargeBinary(32), nullable=True),
)

# The data keys of the generations after the first, and generation 0's once the account
# was re-keyed, each sealed under the current account key (docs/security.md). An account
# never re-keyed has no rows: its data key is derived from its account key.
cm_data_keys = Table(
    "cm_data_keys",
    metadata,
    Column(
        "user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("generation", Integer, primary_key=True, autoincrement=False),
    Column("sealed", LargeBinary(64), nullable=False),
)

cm_key_pairs = Table(
    "cm_key_pairs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), nullable=False),
    Column("key_id", LargeBinary(32), nullable=False, unique=True),
    Column("curve", String(16), nullable=False),
    Column("public_key", LargeBinary(256), nullable=False),
    Column("private_sealed", LargeBinary(1024), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=False), nullable=False),
    Index("ix_cm_key_pairs_user", "user_id"),
)

# kind: "password", "recovery" or "app". name: the app password's name ("" otherwise).
cm_key_slots = Table(
    "cm_key_slots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(64), nullable=False, server_default=""),
    Column("lookup_id", LargeBinary(16), nullable=True, unique=True),
    Column("record", LargeBinary(256), nullable=False),
    # For the password slot: SHA-256 of the virtual_users.password string written in the
    # same transaction. If the hash changes outside cryptmail, login notices and checks it.
    Column("hash_fingerprint", LargeBinary(32), nullable=True),
    Column("created_at", DateTime(timezone=False), nullable=False),
    UniqueConstraint("user_id", "kind", "name", name="uq_cm_key_slots_user_kind_name"),
)

# Security events shown to the user. The detail (client IP, app password name) is
# sealed to the user's public key, so it can be written without the unlocked key.
cm_key_events = Table(
    "cm_key_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), nullable=False),
    Column("at", DateTime(timezone=False), nullable=False),
    Column("event", String(32), nullable=False),
    Column("detail_sealed", LargeBinary(1024), nullable=True),
    Index("ix_cm_key_events_user", "user_id", "at"),
)

# role: inbox, sent, drafts, trash, junk, archive (the same six for everyone) or NULL.
# name_sealed holds the full path; name_lookup is a keyed hash of it for uniqueness.
cm_mailboxes = Table(
    "cm_mailboxes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(16), nullable=True),
    Column("name_sealed", LargeBinary(2048), nullable=True),
    Column("name_lookup", LargeBinary(32), nullable=True),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uidnext", BigInteger, nullable=False),
    Column("highest_modseq", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=False), nullable=False),
    # SUM(size_rounded) of the mailbox's messages, kept in step by every insert and
    # expunge, so a quota check reads a few mailbox rows instead of every message.
    Column("used_bytes", BigInteger, nullable=False, server_default="0"),
    # COUNT of the mailbox's messages, kept in step the same way (the MESSAGE quota).
    Column("message_count", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("user_id", "role", name="uq_cm_mailboxes_user_role"),
    UniqueConstraint("user_id", "name_lookup", name="uq_cm_mailboxes_user_name"),
)

# One row per message. flags_sealed / cache_sealed are NULL until the first session
# that holds the key indexes the message (delivery has only the public key).
cm_messages = Table(
    "cm_messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "mailbox_id", Integer, ForeignKey("cm_mailboxes.id", ondelete="CASCADE"), nullable=False
    ),
    Column("uid", BigInteger, nullable=False),
    Column("modseq", BigInteger, nullable=False),
    # A COPY shares the blob (no re-encryption); the blob goes when its last row goes.
    Column("blob_id", LargeBinary(16), nullable=False),
    Column("sealed", Boolean, nullable=False),
    Column("size_rounded", BigInteger, nullable=False),
    Column("internal_date", DateTime(timezone=False), nullable=False),
    Column("flags_sealed", LargeBinary(4096), nullable=True),
    Column("cache_sealed", _BLOB, nullable=True),
    # SHA-256 over user id and the exact delivered bytes (truncated), kept for one hour
    # so a retry after a crash between commit and "250" is recognised, then cleared.
    Column("delivery_tag", LargeBinary(16), nullable=True),
    # When the row was saved into its mailbox (RFC 8514 SAVEDATE); NULL for rows from
    # before migration 0013, which answer SAVEDATE NIL.
    Column("saved_at", DateTime(timezone=False), nullable=True),
    UniqueConstraint("mailbox_id", "uid", name="uq_cm_messages_mailbox_uid"),
    Index("ix_cm_messages_mailbox_modseq", "mailbox_id", "modseq"),
    Index("ix_cm_messages_blob", "blob_id"),
    Index("ix_cm_messages_delivery_tag", "delivery_tag"),
)

# Sieve filing notes: a message Sieve filed into a folder of the user's own (or gave
# imap4flags) waits in the hidden holding mailbox (role "filing") with this note, sealed
# to the user's PUBLIC key at delivery (folder name, :create, flags; store/_filing.py),
# until a session holding the private key files it. Plain: only which message waits.
cm_filing_notes = Table(
    "cm_filing_notes",
    metadata,
    Column("message_id", BigId, ForeignKey("cm_messages.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), nullable=False),
    Column("note_sealed", LargeBinary(8192), nullable=False),
    Index("ix_cm_filing_notes_user", "user_id"),
)

# The full-text search index: immutable segments, each sealed whole under the user's
# data key (docs/security.md, "Search index"); only the row's size is visible.
cm_fts_segments = Table(
    "cm_fts_segments",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), nullable=False),
    Column("name", LargeBinary(16), nullable=False),
    Column("sealed", _BLOB, nullable=False),
    Index("ix_cm_fts_segments_user", "user_id"),
)

# SORT and THREAD keys of a mailbox, in chunks of UIDs (uid // 2048), each sealed whole
# under the user's data key (docs/security.md, "Sort key records"); the row shows only
# which mailbox, UIDVALIDITY and chunk it belongs to and its padded size.
cm_sort_chunks = Table(
    "cm_sort_chunks",
    metadata,
    Column(
        "mailbox_id", Integer, ForeignKey("cm_mailboxes.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("chunk", Integer, primary_key=True, autoincrement=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("sealed", _BLOB, nullable=False),
)

# Sort entries delivery writes (docs/security.md, "Sort entries from delivery"): per
# message, its sort fields sealed under a delivery epoch key, which is wrapped to the
# user's public key in cm_sort_epochs. A session folds them into cm_sort_chunks. No
# foreign key on epoch_id: an entry whose epoch went is done the slow way, never a
# failed delivery.
cm_sort_epochs = Table(
    "cm_sort_epochs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), nullable=False),
    Column("key_id", LargeBinary(32), nullable=False),
    Column("wrapped", LargeBinary(512), nullable=False),
    Column("created_at", DateTime(timezone=False), nullable=False),
    Index("ix_cm_sort_epochs_user", "user_id"),
)

cm_sort_entries = Table(
    "cm_sort_entries",
    metadata,
    Column("message_id", BigId, ForeignKey("cm_messages.id", ondelete="CASCADE"), primary_key=True),
    Column("epoch_id", BigInteger, nullable=False),
    Column("sealed", _BLOB, nullable=False),
    Index("ix_cm_sort_entries_epoch", "epoch_id"),
)

# The last UIDVALIDITY given to any of the user's mailboxes: it only grows, so a folder
# created (or renamed) under a name that existed before gets a greater value than any
# the name had (RFC 3501 2.3.1.1), however fast it is deleted and created again.
cm_uidvalidity = Table(
    "cm_uidvalidity",
    metadata,
    Column(
        "user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("last_value", BigInteger, nullable=False),
)

# Expunged UIDs per mailbox with the modseq of the expunge (QRESYNC VANISHED).
cm_expunged = Table(
    "cm_expunged",
    metadata,
    Column(
        "mailbox_id", Integer, ForeignKey("cm_mailboxes.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("uid", BigInteger, primary_key=True),
    Column("modseq", BigInteger, nullable=False),
)

# Sealed per-user settings (subscriptions, keyword list): key is a keyed hash.
cm_user_settings = Table(
    "cm_user_settings",
    metadata,
    Column(
        "user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("name", String(32), primary_key=True),
    Column("value_sealed", _BLOB, nullable=False),
)

# IMAP subscriptions: a name may be subscribed whether or not the folder exists
# (RFC 3501 6.3.6), so rows are keyed by the name's keyed hash, not a mailbox id.
cm_subscriptions = Table(
    "cm_subscriptions",
    metadata,
    Column(
        "user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("name_lookup", _DIGEST, primary_key=True),
    Column("name_sealed", LargeBinary(2048), nullable=False),
)

# Sieve's memory at delivery: "a vacation reply went to this sender for this handle" and
# "a duplicate test saw this id", each until `expires_at`. The key is a keyed hash under
# the server key (crypto.sieve_record), never an address or a Message-ID.
cm_sieve_records = Table(
    "cm_sieve_records",
    metadata,
    Column(
        "user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("record", _DIGEST, primary_key=True),
    Column("expires_at", DateTime(timezone=False), nullable=False),
    Index("ix_cm_sieve_records_expires", "expires_at"),
)

# Work journal for resumable long jobs (mailbox encrypt, import): plain ids only.
cm_jobs = Table(
    "cm_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("state_sealed", _BLOB, nullable=True),
    Column("updated_at", DateTime(timezone=False), nullable=False),
)

# Imports staged by `import maildir --at-first-login`, run at the user's first login.
# Plain: the user id, the state, counts and times; where the Maildir is (and the UIDs
# reserved for it) is sealed under the server key, so a database reader learns no path.
cm_staged_imports = Table(
    "cm_staged_imports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("source_sealed", _BLOB, nullable=False),
    Column("done_messages", Integer, nullable=False, default=0),
    Column("total_messages", Integer, nullable=False, default=0),
    Column("error", String(200), nullable=True),
    Column("created_at", DateTime(timezone=False), nullable=False),
    Column("heartbeat_at", DateTime(timezone=False), nullable=False),
    Index("ix_cm_staged_imports_user", "user_id"),
)

# Blobs written for a staged import before the user's login places them (plain and
# global-key mail is sealed at once, see store/_sealed_import.py): the sweep of
# unreferenced blobs keeps them. Random ids only.
cm_staged_blobs = Table(
    "cm_staged_blobs",
    metadata,
    Column(
        "staged_id",
        Integer,
        ForeignKey("cm_staged_imports.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("blob_id", _KEY16, primary_key=True),
    Index("ix_cm_staged_blobs_blob", "blob_id"),
)

# The change log (db/_changes.py): one row per change other nodes must hear of at once
# (new mail, flags, expunge, mailboxes, credentials), written in the change's own
# transaction and read by every node after the last id it saw. Ids only, no names.
# mailbox_id 0: a change of the user, not of one mailbox. No foreign keys: a row of a
# deleted user or mailbox is harmless and ages out with the rest (pruned by id).
cm_changes = Table(
    "cm_changes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("user_id", Integer, nullable=False),
    Column("mailbox_id", Integer, nullable=False, server_default="0"),
    Column("kind", SmallInteger, nullable=False),
)

# The login throttle's failure buckets shared by every node (keys/_shared_buckets.py):
# one row per bucket that owes tokens, keyed by a keyed hash of the bucket key (never
# the address or client address tried). `full_at` (seconds since the epoch) is when
# the bucket is full again; a row past it carries no memory and is deleted.
cm_login_failures = Table(
    "cm_login_failures",
    metadata,
    Column("key_hash", _KEY16, primary_key=True),
    Column("full_at", Double, nullable=False),
    Index("ix_cm_login_failures_full_at", "full_at"),
)

# Users' Sieve scripts (ManageSieve writes, delivery reads): name and text sealed under
# a subkey of the server key, the name's keyed hash for unique look-ups; size, the
# active flag and the time are plain (docs/security.md, "Sieve scripts").
cm_sieve_scripts = Table(
    "cm_sieve_scripts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), nullable=False),
    Column("name_lookup", _DIGEST, nullable=False),
    Column("name_sealed", LargeBinary(2048), nullable=False),
    Column("body_sealed", _BLOB, nullable=False),
    Column("active", Boolean, nullable=False, server_default=false()),
    Column("size", BigInteger, nullable=False),
    Column("modified_at", DateTime(timezone=False), nullable=False),
    UniqueConstraint("user_id", "name_lookup", name="uq_cm_sieve_scripts_user_name"),
)

# URLAUTH grants (RFC 4467; docs/security.md, "URLAUTH grants"): found by a hash of the
# URL's token, opened only with the token itself; the mailbox is a keyed hash under the
# user's data key (for RESETKEY with a mailbox), the expiry is plain so rows are pruned.
cm_url_grants = Table(
    "cm_url_grants",
    metadata,
    Column("lookup", _DIGEST, primary_key=True),
    Column("user_id", Integer, ForeignKey("virtual_users.id", ondelete="CASCADE"), nullable=False),
    Column("mailbox_tag", _KEY16, nullable=False),
    Column("grant_sealed", LargeBinary(4096), nullable=False),
    Column("created_at", DateTime(timezone=False), nullable=False),
    Column("expires_at", DateTime(timezone=False), nullable=True),
    Index("ix_cm_url_grants_user", "user_id"),
    Index("ix_cm_url_grants_expires", "expires_at"),
)
