"""Sealed index fields and keyed lookups under a user's data key."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptmail.crypto import FieldCipher
from cryptmail.errors import DecryptionFailed

DATA_KEY = bytes(range(32))
CONTEXT = b"mailbox-name|17"
FIELDS = FieldCipher(DATA_KEY)


@settings(max_examples=100)
@given(value=st.binary(max_size=2000), context=st.binary(max_size=64))
def test_round_trip(value: bytes, context: bytes) -> None:
    sealed = FIELDS.seal(value, context)
    assert len(sealed) == 29 + len(value)
    assert sealed[0] == 1
    assert FIELDS.open(sealed, context) == value


def test_layout_follows_the_spec() -> None:
    sealed = FIELDS.seal(b"Projects/2025", CONTEXT)
    aead = AESGCM(DATA_KEY)
    assert aead.decrypt(sealed[1:13], sealed[13:], b"cryptmail/v1/field" + CONTEXT) == (
        b"Projects/2025"
    )


def test_nonces_are_fresh() -> None:
    assert FIELDS.seal(b"x", CONTEXT)[1:13] != FIELDS.seal(b"x", CONTEXT)[1:13]


def test_wrong_context_fails() -> None:
    sealed = FIELDS.seal(b"\\Seen \\Flagged", b"flags|1")
    for context in (b"flags|2", b"cache|1", b"flags|1 ", b""):
        with pytest.raises(DecryptionFailed):
            FIELDS.open(sealed, context)


def test_wrong_data_key_fails() -> None:
    sealed = FIELDS.seal(b"Archive/Old", CONTEXT)
    with pytest.raises(DecryptionFailed):
        FieldCipher(bytes(32)).open(sealed, CONTEXT)


def test_every_flipped_bit_fails() -> None:
    sealed = FIELDS.seal(b"a folder name", CONTEXT)
    for position in range(len(sealed)):
        for bit in range(8):
            bad = bytearray(sealed)
            bad[position] ^= 1 << bit
            with pytest.raises(DecryptionFailed):
                FIELDS.open(bytes(bad), CONTEXT)


def test_short_or_unknown_version_fails() -> None:
    sealed = FIELDS.seal(b"", CONTEXT)
    assert len(sealed) == 29
    for length in range(29):
        with pytest.raises(DecryptionFailed):
            FIELDS.open(sealed[:length], CONTEXT)
    for version in (0, 2, 255):
        with pytest.raises(DecryptionFailed):
            FIELDS.open(bytes([version]) + sealed[1:], CONTEXT)


def test_lookup_is_the_documented_keyed_hash() -> None:
    lookup_key = HKDF(hashes.SHA256(), 32, salt=b"", info=b"cryptmail/v1/field-lookup").derive(
        DATA_KEY
    )
    expected = hmac.new(lookup_key, CONTEXT + b"\x00" + b"Receipts", hashlib.sha256).digest()
    assert FIELDS.lookup(b"Receipts", CONTEXT) == expected
    assert FIELDS.lookup(b"Receipts", CONTEXT) == FieldCipher(DATA_KEY).lookup(b"Receipts", CONTEXT)
    assert FIELDS.lookup(b"Receipts", b"mailbox-name|18") != expected
    assert FIELDS.lookup(b"receipts", CONTEXT) != expected
    assert FieldCipher(bytes(32)).lookup(b"Receipts", CONTEXT) != expected


def test_repr_hides_the_key() -> None:
    assert repr(FIELDS) == "FieldCipher(<data key>)"
    assert DATA_KEY.hex() not in repr(FIELDS)


def test_later_generations_seal_under_the_newest_key() -> None:
    later = FieldCipher(DATA_KEY, {1: bytes(32), 2: bytes(range(2, 34))})
    sealed = later.seal(b"Projects", CONTEXT)
    assert sealed[:5] == b"\x02\x00\x00\x00\x02"
    assert len(sealed) == 33 + len(b"Projects")
    aead = AESGCM(bytes(range(2, 34)))
    assert aead.decrypt(sealed[5:17], sealed[17:], b"cryptmail/v1/field" + CONTEXT) == b"Projects"
    assert later.open(sealed, CONTEXT) == b"Projects"
    # Older fields keep opening; the lookup key stays generation 0's.
    assert later.open(FIELDS.seal(b"old", CONTEXT), CONTEXT) == b"old"
    assert later.lookup(b"x", CONTEXT) == FIELDS.lookup(b"x", CONTEXT)
    # A cipher without generation 2 cannot read it.
    with pytest.raises(DecryptionFailed):
        FieldCipher(DATA_KEY, {1: bytes(32)}).open(sealed, CONTEXT)
    with pytest.raises(DecryptionFailed):
        FIELDS.open(sealed, CONTEXT)
