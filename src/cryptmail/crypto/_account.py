"""The account key: one random secret per user and generation that every slot holds.

    data_key_0       = HKDF-SHA256(account_key of generation 0, salt="", info=LABEL_DATA_KEY)
    data_key_g       = random(32) for every later generation g
    private_wrap_key = HKDF-SHA256(account_key, salt="", info=LABEL_PRIVATE_KEY_WRAP)
    sealed_private   = AES-256-GCM(private_wrap_key, nonce, aad=key_id).encrypt(PKCS#8 DER)
    data_wrap_key    = HKDF-SHA256(account_key, salt="", info=LABEL_DATA_KEY_WRAP)
    sealed_data_key  = AES-256-GCM(data_wrap_key, nonce, aad=LABEL_DATA_KEY_WRAP ||
                                   u32(g)).encrypt(data_key_g)

A re-key makes a new account key and re-seals every private key and data key under it;
nothing sealed under those keys (mail, fields) is re-encrypted.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryptmail.crypto._keypair import PrivateKey, load_private_key, serialize_private_key
from cryptmail.crypto._labels import (
    ACCOUNT_KEY_SIZE,
    LABEL_DATA_KEY,
    LABEL_DATA_KEY_WRAP,
    LABEL_PRIVATE_KEY_WRAP,
)
from cryptmail.errors import DecryptionFailed


def new_account_key() -> bytes:
    return os.urandom(ACCOUNT_KEY_SIZE)


def _derive(account_key: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(account_key)


def derive_data_key(account_key: bytes) -> bytes:
    """The data key of generation 0 (the user's index rows, folder names, flags and
    caches), derived from the first account key; later generations are random."""
    return _derive(account_key, LABEL_DATA_KEY)


def new_data_key() -> bytes:
    return os.urandom(32)


def _data_key_aad(generation: int) -> bytes:
    return LABEL_DATA_KEY_WRAP + struct.pack(">I", generation)


def seal_data_key(account_key: bytes, data_key: bytes, generation: int) -> bytes:
    """`nonce (12) || AEAD(data_wrap_key, nonce, LABEL_DATA_KEY_WRAP || u32(generation))`."""
    if len(data_key) != 32:
        raise ValueError("a data key is 32 bytes")
    nonce = os.urandom(12)
    wrap = AESGCM(_derive(account_key, LABEL_DATA_KEY_WRAP))
    return nonce + wrap.encrypt(nonce, data_key, _data_key_aad(generation))


def open_data_key(account_key: bytes, sealed: bytes, generation: int) -> bytes:
    """The data key of `generation`; DecryptionFailed for another account key or row."""
    wrap = AESGCM(_derive(account_key, LABEL_DATA_KEY_WRAP))
    try:
        return wrap.decrypt(sealed[:12], sealed[12:], _data_key_aad(generation))
    except (InvalidTag, ValueError) as exc:
        raise DecryptionFailed("sealed data key") from exc


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
