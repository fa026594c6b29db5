"""Magic bytes, versions and domain-separation labels of our formats.

Spelled exactly as in docs/security.md; tests/crypto/test_labels.py compares them.
"""

from __future__ import annotations

from typing import Final

# Blob (message body) container: version 3 wraps the message key under its own label
# (LABEL_BLOB_KEY_WRAP); version 1 (LABEL_ECIES_WRAP) is still read. Version 2 was
# never written: everything the label separation brought is numbered 3.
BLOB_MAGIC: Final = b"CMBLOB"
BLOB_VERSION: Final = 3
BLOB_VERSION_1: Final = 1
BLOB_MODE_PLAIN: Final = 0
BLOB_MODE_SEALED: Final = 1
BLOB_CHUNK_SIZE: Final = 64 * 1024
BLOB_TAG_SIZE: Final = 16
LABEL_BLOB_PAYLOAD: Final = b"cryptmail/v1/blob-payload"

# ECIES wrap of a message key to a public key: one label per purpose, each with a
# length-prefixed context. LABEL_ECIES_WRAP is the shared one of version-1 blobs,
# version-1 sealed boxes and slot boxes (whose context starts with LABEL_SLOT_BOX).
LABEL_ECIES_WRAP: Final = b"cryptmail/v1/ecies-wrap"
LABEL_BLOB_KEY_WRAP: Final = b"cryptmail/v3/blob-key-wrap"
LABEL_SEALED_BOX: Final = b"cryptmail/v3/sealed-box"
SEALED_BOX_VERSION: Final = 3
MESSAGE_KEY_SIZE: Final = 32

# Account key hierarchy.
ACCOUNT_KEY_SIZE: Final = 32
LABEL_DATA_KEY: Final = b"cryptmail/v1/data-key"
LABEL_PRIVATE_KEY_WRAP: Final = b"cryptmail/v1/private-key-wrap"
LABEL_DATA_KEY_WRAP: Final = b"cryptmail/v2/data-key-wrap"

# Key slots: version 2 is written, version 1 (LABEL_SLOT) is still read.
SLOT_VERSION: Final = 2
SLOT_VERSION_1: Final = 1
SLOT_SALT_SIZE: Final = 16
LABEL_SLOT: Final = b"cryptmail/v1/slot"
LABEL_SLOT_BOX: Final = b"cryptmail/v2/slot"
LABEL_SLOT_PRIVATE_KEY: Final = b"cryptmail/v2/slot-private-key"

# Sealed index fields (folder names, flags, caches): version 3 seals under a field key
# derived from the data key (LABEL_FIELD_KEY); versions 2 (naming the data key's
# generation) and 1 (generation 0) used the data key itself and are still read.
FIELD_VERSION: Final = 3
FIELD_VERSION_2: Final = 2
FIELD_VERSION_1: Final = 1
LABEL_FIELD: Final = b"cryptmail/v1/field"
LABEL_FIELD_KEY: Final = b"cryptmail/v3/field-key"
LABEL_FIELD_LOOKUP: Final = b"cryptmail/v1/field-lookup"

# Curve identifiers as stored in blob headers and key rows.
CURVE_IDS: Final = {"x25519": 1, "prime256v1": 2, "secp384r1": 3, "secp521r1": 4}

# One-time codes (recovery codes, app passwords).
LABEL_CODE_LOOKUP: Final = b"cryptmail/v1/code-lookup"
RECOVERY_CODE_GROUPS: Final = 8
APP_PASSWORD_GROUPS: Final = 4
CODE_GROUP_SIZE: Final = 5

# Authenticated key rows (docs/security.md, "Authenticated key rows"): a MAC under the
# account key over what a login trusts, a MAC under the server key over what delivery
# trusts, and the keyed retry tag of a delivery.
LABEL_ACCOUNT_MAC: Final = b"cryptmail/v2/account-mac"
LABEL_DELIVERY_MAC: Final = b"cryptmail/v2/delivery-mac"
LABEL_DELIVERY_TAG: Final = b"cryptmail/v2/delivery-tag"
# Where a staged first-login import's Maildir is (docs/security.md, "Staged imports").
LABEL_STAGED_IMPORT: Final = b"cryptmail/v2/staged-import"
# Sieve scripts (docs/security.md, "Sieve scripts"): sealed as fields under a subkey of
# the server key, since delivery reads them without any user secret.
LABEL_SIEVE_SCRIPT_KEY: Final = b"cryptmail/v3/sieve-script-key"
# Sieve vacation and duplicate records: keyed hashes under the server key, never addresses.
LABEL_SIEVE_RECORD: Final = b"cryptmail/v2/sieve-record"
SERVER_KEY_SIZE: Final = 32
# URLAUTH (RFC 4467, docs/security.md "URLAUTH grants"): the token in the URL names its
# row by a lookup id and opens the grant sealed under a key derived from it.
URLAUTH_VERSION: Final = 1
URLAUTH_TOKEN_SIZE: Final = 32
LABEL_URLAUTH_LOOKUP: Final = b"cryptmail/v1/urlauth-lookup"
LABEL_URLAUTH_WRAP: Final = b"cryptmail/v1/urlauth-wrap"
