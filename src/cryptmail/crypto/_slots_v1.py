"""Key slot records of version 1, read (and upgraded to version 2) but no longer written.

    slot_key = Argon2id(credential, salt, m, t, p)
    sealed   = AES-256-GCM(slot_key, nonce, aad = LABEL_SLOT || context).encrypt(account_key)
    record   = version u8 | m u32 | t u32 | p u8 | salt 16 | nonce 12 | sealed 48

`context` names the account and the slot (kind and name), so a slot copied to another
account or relabelled fails to unlock. A version-1 slot can only be re-locked by someone
holding its credential, which is why version 2 (`_slots`) replaced it.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cryptmail.config import Argon2Params
from cryptmail.crypto._kdf import derive_key
from cryptmail.crypto._labels import ACCOUNT_KEY_SIZE, LABEL_SLOT, SLOT_SALT_SIZE, SLOT_VERSION_1
from cryptmail.errors import DecryptionFailed, MalformedObject

_HEAD = struct.Struct(">BIIB")
RECORD_SIZE_V1 = _HEAD.size + SLOT_SALT_SIZE + 12 + ACCOUNT_KEY_SIZE + 16


def lock_slot_v1(
    account_key: bytes, credential: bytes, params: Argon2Params, context: bytes
) -> bytes:
    """A version-1 record (for tests and vectors of the old format only)."""
    return _lock_slot(account_key, credential, params, context, os.urandom(SLOT_SALT_SIZE))


def _lock_slot(
    account_key: bytes, credential: bytes, params: Argon2Params, context: bytes, salt: bytes
) -> bytes:
    if len(account_key) != ACCOUNT_KEY_SIZE:
        raise ValueError("an account key is 32 bytes")
    slot_key = derive_key(credential, salt, params)
    nonce = os.urandom(12)
    sealed = AESGCM(slot_key).encrypt(nonce, account_key, LABEL_SLOT + context)
    head = _HEAD.pack(SLOT_VERSION_1, params.memory_kib, params.time_cost, params.parallelism)
    return head + salt + nonce + sealed


def slot_params_v1(record: bytes) -> Argon2Params:
    """The Argon2 parameters a version-1 record asks for (to check them before unlocking)."""
    if len(record) != RECORD_SIZE_V1:
        raise MalformedObject("key slot record has the wrong length")
    version, memory, time_cost, parallelism = _HEAD.unpack_from(record)
    if version != SLOT_VERSION_1:
        raise MalformedObject(f"key slot version {version} is not supported")
    return Argon2Params(memory, time_cost, parallelism)


def slot_salt_v1(record: bytes) -> bytes:
    slot_params_v1(record)
    return record[_HEAD.size : _HEAD.size + SLOT_SALT_SIZE]


def open_slot_v1(record: bytes, credential: bytes, context: bytes) -> tuple[bytes, bytes]:
    """The account key and the Argon2 output (the slot key) of a version-1 record.

    The Argon2 output is returned so that the record can be upgraded to version 2 at
    the same salt and cost without a second Argon2."""
    params = slot_params_v1(record)
    offset = _HEAD.size
    salt = record[offset : offset + SLOT_SALT_SIZE]
    nonce = record[offset + SLOT_SALT_SIZE : offset + SLOT_SALT_SIZE + 12]
    sealed = record[offset + SLOT_SALT_SIZE + 12 :]
    slot_key = derive_key(credential, salt, params)
    try:
        return AESGCM(slot_key).decrypt(nonce, sealed, LABEL_SLOT + context), slot_key
    except InvalidTag as exc:
        raise DecryptionFailed("key slot") from exc


def unlock_slot_v1(record: bytes, credential: bytes, context: bytes) -> bytes:
    """The account key; DecryptionFailed for a wrong credential or a changed record.

    Callers check `slot_params_v1(record)` against the configured ceiling first.
    """
    return open_slot_v1(record, credential, context)[0]
