"""The account key: one random secret per user that every slot locks.

    data_key         = HKDF-SHA256(account_key, salt="", info=LABEL_DATA_KEY)
    private_wrap_key = HKDF-SHA256(account_key, salt="", info=LABEL_PRIVATE_KEY_WRAP)
    sealed_private   = AES-256-GCM(private_wrap_key, nonce, aad=key_id).encrypt(PKCS#8 DER)

Rotating the key pair adds a private key sealed under the same account key, so every
slot keeps unlocking every key, and nothing else is re-encrypted.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryptmail.crypto._keypair import PrivateKey, load_private_key, serialize_private_key
from cryptmail.crypto._labels import ACCOUNT_KEY_SIZE, LABEL_DATA_KEY, LABEL_PRIVATE_KEY_WRAP
from cryptmail.errors import DecryptionFailed


def new_account_key() -> bytes:
    return os.urandom(ACCOUNT_KEY_SIZE)


def _derive(account_key: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(account_key)


def derive_data_key(account_key: bytes) -> bytes:
    """The symmetric key for the user's index rows, folder names, flags and caches."""
    return _derive(account_key, LABEL_DATA_KEY)


def seal_private_key(account_key: bytes, private_key: PrivateKey, key_id: bytes) -> bytes:
    nonce = os.urandom(12)
    wrap = AESGCM(_derive(account_key, LABEL_PRIVATE_KEY_WRAP))
    return nonce + wrap.encrypt(nonce, serialize_private_key(private_key), key_id)


def open_private_key(account_key: bytes, sealed: bytes, key_id: bytes) -> PrivateKey:
    wrap = AESGCM(_derive(account_key, LABEL_PRIVATE_KEY_WRAP))
    try:
        der = wrap.decrypt(sealed[:12], sealed[12:], key_id)
    except (InvalidTag, ValueError) as exc:
        raise DecryptionFailed("sealed private key") from exc
    return load_private_key(der)
