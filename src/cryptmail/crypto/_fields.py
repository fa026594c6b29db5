"""Sealed index fields: folder names, flags, keywords, caches, cached message keys.

    sealed = version u8 | nonce 12 | AES-256-GCM(data_key, nonce,
                                                 aad = LABEL_FIELD || context).encrypt(value)

`context` names the column and the row (e.g. b"mailbox-name:17"), so a value moved to
another row or column fails to open. Nonces are random: 2^32 seals per data key keep
the collision chance below 2^-32, far above any mailbox's lifetime of updates.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cryptmail.crypto._labels import FIELD_VERSION, LABEL_FIELD
from cryptmail.errors import DecryptionFailed

_VERSION = bytes([FIELD_VERSION])


class FieldCipher:
    """Seals and opens index fields under one user's data key."""

    __slots__ = ("_aead",)

    def __init__(self, data_key: bytes) -> None:
        self._aead = AESGCM(data_key)

    def __repr__(self) -> str:
        return "FieldCipher(<data key>)"

    def seal(self, value: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, value, LABEL_FIELD + context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        if len(sealed) < 29 or sealed[:1] != _VERSION:
            raise DecryptionFailed("index field")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], LABEL_FIELD + context)
        except InvalidTag as exc:
            raise DecryptionFailed("index field") from exc
