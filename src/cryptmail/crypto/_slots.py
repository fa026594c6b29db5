"""Key slots: the account key locked by one credential (LUKS-style).

    slot_key = Argon2id(credential, salt, m, t, p)
    sealed   = AES-256-GCM(slot_key, nonce, aad = LABEL_SLOT || context).encrypt(account_key)
    record   = version u8 | m u32 | t u32 | p u8 | salt 16 | nonce 12 | sealed 48

`context` names the account and the slot (kind and name), so a slot copied to another
account or relabelled fails to unlock.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cryptmail.crypto._kdf import Argon2Params, derive_key
from cryptmail.crypto._labels import ACCOUNT_KEY_SIZE, LABEL_SLOT, SLOT_SALT_SIZE, SLOT_VERSION
from cryptmail.errors import DecryptionFailed, MalformedObject

_HEAD = struct.Struct(">BIIB")
_RECORD_SIZE = _HEAD.size + SLOT_SALT_SIZE + 12 + ACCOUNT_KEY_SIZE + 16


def lock_slot(account_key: bytes, credential: bytes, params: Argon2Params, context: bytes) -> bytes:
    """A slot record that `unlock_slot(record, credential, context)` opens."""
    return _lock_slot(account_key, credential, params, context, os.urandom(SLOT_SALT_SIZE))


def _lock_slot(
    account_key: bytes, credential: bytes, params: Argon2Params, context: bytes, salt: bytes
) -> bytes:
    if len(account_key) != ACCOUNT_KEY_SIZE:
        raise ValueError("an account key is 32 bytes")
    slot_key = derive_key(credential, salt, params)
    nonce = os.urandom(12)
    sealed = AESGCM(slot_key).encrypt(nonce, account_key, LABEL_SLOT + context)
    head = _HEAD.pack(SLOT_VERSION, params.memory_kib, params.time_cost, params.parallelism)
    return head + salt + nonce + sealed


def slot_params(record: bytes) -> Argon2Params:
    """The Argon2 parameters a slot record asks for (to check them before unlocking)."""
    if len(record) != _RECORD_SIZE:
        raise MalformedObject("key slot record has the wrong length")
    version, memory, time_cost, parallelism = _HEAD.unpack_from(record)
    if version != SLOT_VERSION:
        raise MalformedObject(f"key slot version {version} is not supported")
    return Argon2Params(memory, time_cost, parallelism)


def unlock_slot(record: bytes, credential: bytes, context: bytes) -> bytes:
    """The account key; DecryptionFailed for a wrong credential or a changed record.

    Callers check `slot_params(record)` against the configured ceiling first.
    """
    params = slot_params(record)
    offset = _HEAD.size
    salt = record[offset : offset + SLOT_SALT_SIZE]
    nonce = record[offset + SLOT_SALT_SIZE : offset + SLOT_SALT_SIZE + 12]
    sealed = record[offset + SLOT_SALT_SIZE + 12 :]
    slot_key = derive_key(credential, salt, params)
    try:
        return AESGCM(slot_key).decrypt(nonce, sealed, LABEL_SLOT + context)
    except InvalidTag as exc:
        raise DecryptionFailed("key slot") from exc
