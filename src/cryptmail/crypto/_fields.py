"""Sealed index fields: folder names, flags, keywords, caches, cached message keys.

    field_key_g = HKDF-SHA256(data_key_g, salt="", info=LABEL_FIELD_KEY)
    sealed      = 0x03 | u32 generation | nonce 12 | AES-256-GCM(field_key_g, nonce,
                                                     aad = LABEL_FIELD || context)

A re-key adds a data key; new fields are sealed under the newest one, so a credential
that only opens an older account key cannot read them. Keyed lookups stay under
generation 0's lookup key: a unique name must hash the same after a re-key. Each data
key is only ever an HKDF input (field key, lookup key), never an AES key itself.

Versions 1 (0x01 | nonce | AES-256-GCM(data_key_0, ...)) and 2 (0x02 | u32 generation
| nonce | AES-256-GCM(data_key_g, ...)) sealed under the data key itself; they are
still opened, with the context the caller names for them (`legacy`), but never
written. A version-3 field relabelled as 1 or 2 meets another key and fails.

`context` names the column and the row (crypto._context), so a value moved to another
row or column fails to open. Nonces are random: 2^32 seals per data key keep the
collision chance below 2^-32, far above any mailbox's lifetime of updates.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryptmail.crypto._labels import (
    FIELD_VERSION,
    FIELD_VERSION_1,
    FIELD_VERSION_2,
    LABEL_FIELD,
    LABEL_FIELD_KEY,
    LABEL_FIELD_LOOKUP,
)
from cryptmail.errors import DecryptionFailed

_VERSION_1 = bytes([FIELD_VERSION_1])
_VERSION_2 = bytes([FIELD_VERSION_2])
_VERSION_3 = bytes([FIELD_VERSION])
_GENERATION = struct.Struct(">I")
_MIN_SIZE = {_VERSION_1: 1 + 12 + 16, _VERSION_2: 5 + 12 + 16, _VERSION_3: 5 + 12 + 16}


def _derive(data_key: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(data_key)


class FieldCipher:
    """Seals and opens index fields under one user's data keys: `data_key` is
    generation 0's, `later` maps each later generation to its data key."""

    __slots__ = ("_field_keys", "_generation", "_head", "_legacy", "_lookup_key")

    def __init__(self, data_key: bytes, later: Mapping[int, bytes] | None = None) -> None:
        keys = {0: data_key}
        for generation, key in (later or {}).items():
            if generation < 1:
                raise ValueError("later data keys have generations from 1")
            keys[generation] = key
        # Versions 1 and 2 used the data keys as AES keys: kept for opening only.
        self._legacy = {generation: AESGCM(key) for generation, key in keys.items()}
        self._field_keys = {
            generation: AESGCM(_derive(key, LABEL_FIELD_KEY)) for generation, key in keys.items()
        }
        self._generation = max(keys)
        self._head = _VERSION_3 + _GENERATION.pack(self._generation)
        self._lookup_key = _derive(data_key, LABEL_FIELD_LOOKUP)

    def lookup(self, value: bytes, context: bytes) -> bytes:
        """A keyed hash of `value` for equality look-ups (unique folder names) without
        revealing it: HMAC-SHA256(HKDF(data_key, LABEL_FIELD_LOOKUP), context || 0 || value)."""
        return hmac.new(self._lookup_key, context + b"\x00" + value, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "FieldCipher(<data key>)"

    @property
    def generation(self) -> int:
        """The generation new fields are sealed under."""
        return self._generation

    def seal(self, value: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        aead = self._field_keys[self._generation]
        return self._head + nonce + aead.encrypt(nonce, value, LABEL_FIELD + context)

    @staticmethod
    def is_current(sealed: bytes) -> bool:
        """Whether `sealed` is in the format `seal` writes (else it is worth re-sealing)."""
        return sealed[:1] == _VERSION_3

    def open(self, sealed: bytes, context: bytes, *, legacy: bytes | None = None) -> bytes:
        """The value; DecryptionFailed for another key, context or a changed field.

        A version-1 or -2 field opens with `legacy` as its context when given (a column
        whose binding changed with version 3), else with `context`."""
        version = sealed[:1]
        aead: AESGCM | None = None
        start = 5
        if len(sealed) >= _MIN_SIZE.get(version, 1 << 30):
            if version == _VERSION_1:
                aead, start = self._legacy[0], 1
            else:
                generation = _GENERATION.unpack_from(sealed, 1)[0]
                keys = self._field_keys if version == _VERSION_3 else self._legacy
                aead = keys.get(generation)
        if aead is None:
            raise DecryptionFailed("index field")
        if version != _VERSION_3 and legacy is not None:
            context = legacy
        try:
            nonce, body = sealed[start : start + 12], sealed[start + 12 :]
            return aead.decrypt(nonce, body, LABEL_FIELD + context)
        except InvalidTag as exc:
            raise DecryptionFailed("index field") from exc
