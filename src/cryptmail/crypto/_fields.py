"""Sealed index fields: folder names, flags, keywords, caches, cached message keys.

    sealed = version u8 | nonce 12 | AES-256-GCM(data_key, nonce,
                                                 aad = LABEL_FIELD || context).encrypt(value)

`context` names the column and the row (e.g. b"mailbox-name:17"), so a value moved to
another row or column fails to open. Nonces are random: 2^32 seals per data key keep
the collision chance below 2^-32, far above any mailbox's lifetime of updates.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryptmail.crypto._labels import FIELD_VERSION, LABEL_FIELD, LABEL_FIELD_LOOKUP
from cryptmail.errors import DecryptionFailed

_VERSION = bytes([FIELD_VERSION])


class FieldCipher:
    """Seals and opens index fields under one user's data key."""

    __slots__ = ("_aead", "_lookup_key")

    def __init__(self, data_key: bytes) -> None:
        self._aead = AESGCM(data_key)
        self._lookup_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=LABEL_FIELD_LOOKUP
        ).derive(data_key)

    def lookup(self, value: bytes, context: bytes) -> bytes:
        """A keyed hash of `value` for equality look-ups (unique folder names) without
        revealing it: HMAC-SHA256(HKDF(data_key, LABEL_FIELD_LOOKUP), context || 0 || value)."""
        return hmac.new(self._lookup_key, context + b"\x00" + value, hashlib.sha256).digest()

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
