"""Sealed index fields and keyed lookups under a user's data key."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.exceptions import InvalidTag
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


def _field_key(data_key: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=b"", info=b"cryptmail/v3/field-key").derive(data_key)


def _sealed_v1(value: bytes, context: bytes, data_key: bytes = DATA_KEY) -> bytes:
    """A version-1 field as written before version 3: the data key as the AES key."""
    nonce = bytes(range(12))
    return b"\x01" + nonce + AESGCM(data_key).encrypt(nonce, value, b"cryptmail/v1/field" + context)


def _sealed_v2(value: bytes, context: bytes, generation: int, data_key: bytes) -> bytes:
    nonce = bytes(range(12))
    head = b"\x02" + generation.to_bytes(4, "big")
    return head + nonce + AESGCM(data_key).encrypt(nonce, value, b"cryptmail/v1/field" + context)


@settings(max_examples=100)
@given(value=st.binary(max_size=2000), context=st.binary(max_size=64))
def test_round_trip(value: bytes, context: bytes) -> None:
    sealed = FIELDS.seal(value, context)
    assert len(sealed) == 33 + len(value)
    assert sealed[:5] == b"\x03\x00\x00\x00\x00"
    assert FIELDS.is_current(sealed)
    assert FIELDS.open(sealed, context) == value


def test_layout_follows_the_spec() -> None:
    sealed = FIELDS.seal(b"Projects/2025", CONTEXT)
    aead = AESGCM(_field_key(DATA_KEY))
    assert aead.decrypt(sealed[5:17], sealed[17:], b"cryptmail/v1/field" + CONTEXT) == (
        b"Projects/2025"
    )
    # The data key itself is no AES key of a version-3 field.
    with pytest.raises(InvalidTag):
        AESGCM(DATA_KEY).decrypt(sealed[5:17], sealed[17:], b"cryptmail/v1/field" + CONTEXT)


def test_version_1_and_2_fields_still_open() -> None:
    old = _sealed_v1(b"Projects/2024", CONTEXT)
    assert not FIELDS.is_current(old)
    assert FIELDS.open(old, CONTEXT) == b"Projects/2024"
    later = FieldCipher(DATA_KEY, {1: bytes(32)})
    assert later.open(old, CONTEXT) == b"Projects/2024"
    assert later.open(_sealed_v2(b"x", CONTEXT, 1, bytes(32)), CONTEXT) == b"x"
    with pytest.raises(DecryptionFailed):
        FIELDS.open(_sealed_v2(b"x", CONTEXT, 1, bytes(32)), CONTEXT)


def test_legacy_context_applies_to_old_versions_only() -> None:
    """A column whose binding changed: old fields open with the old context, new ones
    only with the new; neither opens with the other's."""
    new_context, old_context = b"\x00\x01a\x00\x0217", b"mailbox-name|5"
    old = _sealed_v1(b"Work", old_context)
    assert FIELDS.open(old, new_context, legacy=old_context) == b"Work"
    with pytest.raises(DecryptionFailed):
        FIELDS.open(old, new_context)
    new = FIELDS.seal(b"Work", new_context)
    assert FIELDS.open(new, new_context, legacy=old_context) == b"Work"
    with pytest.raises(DecryptionFailed):
        FIELDS.open(new, old_context, legacy=new_context)


def test_a_version_3_field_cannot_be_downgraded() -> None:
    """Relabelling a version-3 field as 1 or 2 meets the data key instead of the field
    key, and fails under any context."""
    later = FieldCipher(DATA_KEY, {1: bytes(32)})
    for cipher in (FIELDS, later):
        sealed = cipher.seal(b"Work", CONTEXT)
        as_v2 = b"\x02" + sealed[1:]
        as_v1 = b"\x01" + sealed[5:]
        for bad in (as_v1, as_v2):
            with pytest.raises(DecryptionFailed):
                later.open(bad, CONTEXT, legacy=CONTEXT)


def test_nonces_are_fresh() -> None:
    assert FIELDS.seal(b"x", CONTEXT)[5:17] != FIELDS.seal(b"x", CONTEXT)[5:17]


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
    assert len(sealed) == 33
    for length in range(33):
        with pytest.raises(DecryptionFailed):
            FIELDS.open(sealed[:length], CONTEXT)
    old = _sealed_v1(b"", CONTEXT)
    assert len(old) == 29
    for length in range(29):
        with pytest.raises(DecryptionFailed):
            FIELDS.open(old[:length], CONTEXT)
    for version in (0, 1, 2, 4, 255):
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
    assert sealed[:5] == b"\x03\x00\x00\x00\x02"
    assert len(sealed) == 33 + len(b"Projects")
    aead = AESGCM(_field_key(bytes(range(2, 34))))
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
