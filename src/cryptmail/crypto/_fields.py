"""Sealed index fields: folder names, flags, keywords, caches, cached message keys.

    sealed = 0x01 | nonce 12 | AES-256-GCM(data_key_0, nonce,
                                          aad = LABEL_FIELD || context).encrypt(value)
           | 0x02 | u32 generation | nonce 12 | AES-256-GCM(data_key_generation, ...)

A re-key adds a data key; new fields are sealed under the newest one, so a credential
that only opens an older account key cannot read them. Version 1 is generation 0, and
a cipher whose newest key is generation 0 still writes version 1. Keyed lookups stay
under generation 0's lookup key: a unique name must hash the same after a re-key.

`context` names the column and the row (e.g. b"mailbox-name:17"), so a value moved to
another row or column fails to open. Nonces are random: 2^32 seals per data key keep
the collision chance below 2^-32, far above any mailbox's lifetime of updates.
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
    LABEL_FIELD,
    LABEL_FIELD_LOOKUP,
)
from cryptmail.errors import DecryptionFailed

_VERSION_1 = bytes([FIELD_VERSION_1])
_VERSION_2 = bytes([FIELD_VERSION])
_GENERATION = struct.Struct(">I")


class FieldCipher:
    """Seals and opens index fields under one user's data keys: `data_key` is
    generation 0's, `later` maps each later generation to its data key."""

    __slots__ = ("_aead", "_aeads", "_generation", "_head", "_lookup_key")

    def __init__(self, data_key: bytes, later: Mapping[int, bytes] | None = None) -> None:
        self._aeads = {0: AESGCM(data_key)}
        for generation, key in (later or {}).items():
            if generation < 1:
                raise ValueError("later data keys have generations from 1")
            self._aeads[generation] = AESGCM(key)
        self._generation = max(self._aeads)
        self._aead = self._aeads[self._generation]
        self._head = (
            _VERSION_1 if self._generation == 0 else _VERSION_2 + _GENERATION.pack(self._generation)
        )
        self._lookup_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=LABEL_FIELD_LOOKUP
        ).derive(data_key)

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
        return self._head + nonce + self._aead.encrypt(nonce, value, LABEL_FIELD + context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        aead: AESGCM | None = None
        if len(sealed) >= 29 and sealed[:1] == _VERSION_1:
            aead, start = self._aeads[0], 1
        elif len(sealed) >= 33 and sealed[:1] == _VERSION_2:
            aead, start = self._aeads.get(_GENERATION.unpack_from(sealed, 1)[0]), 5
        if aead is None:
            raise DecryptionFailed("index field")
        try:
            nonce, body = sealed[start : start + 12], sealed[start + 12 :]
            return aead.decrypt(nonce, body, LABEL_FIELD + context)
        except InvalidTag as exc:
            raise DecryptionFailed("index field") from exc
