"""The account key: the data key derived from it and the private keys sealed under it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryptmail.crypto import (
    CurveName,
    PrivateKey,
    derive_data_key,
    new_account_key,
    open_private_key,
    public_info,
    seal_private_key,
)
from cryptmail.crypto._keypair import serialize_private_key
from cryptmail.errors import DecryptionFailed, MalformedObject

ACCOUNT_KEY = bytes(range(32))


def _hkdf(ikm: bytes, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=b"", info=info).derive(ikm)


def test_new_account_keys_are_random() -> None:
    keys = {new_account_key() for _ in range(8)}
    assert len(keys) == 8 and all(len(k) == 32 for k in keys)


def test_data_key_is_the_documented_hkdf() -> None:
    data_key = derive_data_key(ACCOUNT_KEY)
    assert data_key == _hkdf(ACCOUNT_KEY, b"cryptmail/v1/data-key")
    # An empty salt and no salt are the same HKDF (RFC 5869: HashLen zero bytes).
    assert data_key == HKDF(hashes.SHA256(), 32, None, b"cryptmail/v1/data-key").derive(ACCOUNT_KEY)
    assert data_key != _hkdf(ACCOUNT_KEY, b"cryptmail/v1/private-key-wrap")
    assert derive_data_key(bytes(32)) != data_key


def test_sealed_private_key_round_trip(
    private_keys: dict[CurveName, PrivateKey], curve: CurveName
) -> None:
    key = private_keys[curve]
    key_id = public_info(key).key_id
    sealed = seal_private_key(ACCOUNT_KEY, key, key_id)
    der = serialize_private_key(key)
    assert len(sealed) == 12 + len(der) + 16
    opened = open_private_key(ACCOUNT_KEY, sealed, key_id)
    assert public_info(opened) == public_info(key)
    # The layout: nonce, then AES-256-GCM under the documented wrap key, aad = key id.
    wrap = AESGCM(_hkdf(ACCOUNT_KEY, b"cryptmail/v1/private-key-wrap"))
    assert wrap.decrypt(sealed[:12], sealed[12:], key_id) == der
    assert seal_private_key(ACCOUNT_KEY, key, key_id)[:12] != sealed[:12]


def test_wrong_account_key_or_key_id_fails(private_keys: dict[CurveName, PrivateKey]) -> None:
    key = private_keys["x25519"]
    key_id = public_info(key).key_id
    sealed = seal_private_key(ACCOUNT_KEY, key, key_id)
    with pytest.raises(DecryptionFailed):
        open_private_key(bytes(32), sealed, key_id)
    with pytest.raises(DecryptionFailed):
        open_private_key(ACCOUNT_KEY, sealed, bytes(32))
    # The data key is not the wrap key.
    with pytest.raises(DecryptionFailed):
        open_private_key(derive_data_key(ACCOUNT_KEY), sealed, key_id)


def test_every_flipped_bit_and_truncation_fails(private_keys: dict[CurveName, PrivateKey]) -> None:
    key = private_keys["prime256v1"]
    key_id = public_info(key).key_id
    sealed = seal_private_key(ACCOUNT_KEY, key, key_id)
    for position in range(len(sealed)):
        bad = bytearray(sealed)
        bad[position] ^= 1 << (position % 8)
        with pytest.raises(DecryptionFailed):
            open_private_key(ACCOUNT_KEY, bytes(bad), key_id)
    for length in (0, 1, 11, 12, 27, 28, len(sealed) - 1):
        with pytest.raises(DecryptionFailed):
            open_private_key(ACCOUNT_KEY, sealed[:length], key_id)


def test_authentic_bytes_that_are_not_a_key_are_malformed() -> None:
    key_id = bytes(32)
    wrap = AESGCM(_hkdf(ACCOUNT_KEY, b"cryptmail/v1/private-key-wrap"))
    nonce = bytes(12)
    sealed = nonce + wrap.encrypt(nonce, b"not a key", key_id)
    with pytest.raises(MalformedObject):
        open_private_key(ACCOUNT_KEY, sealed, key_id)
