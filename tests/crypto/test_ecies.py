"""ECIES wrap of a message key, and the sealed box built on it.

Known answers: RFC 5869 (HKDF-SHA-256, which derives the wrap key) and the AES-256-GCM
test cases 13 and 14 of McGrew and Viega's GCM specification (the all-zero nonce
ECIES uses with its one-time keys).
"""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

import cryptmail.crypto._ecies as ecies_module
from cryptmail.crypto import (
    CurveName,
    PrivateKey,
    WrappedKey,
    curve_names,
    generate_private_key,
    load_public_key,
    open_box,
    public_info,
    seal_box,
    unwrap_key,
    wrap_key,
)
from cryptmail.crypto._keypair import ecdh
from cryptmail.crypto._labels import LABEL_BLOB_KEY_WRAP, LABEL_ECIES_WRAP, LABEL_SEALED_BOX
from cryptmail.errors import DecryptionFailed

MESSAGE_KEY = bytes(range(32))
CONTEXT = b"\x07" * 16
EPHEMERAL_SIZES = {"x25519": 32, "prime256v1": 33, "secp384r1": 49, "secp521r1": 67}
_KEY = generate_private_key("x25519")


# --- known answers for the primitives ECIES composes --------------------------------


@pytest.mark.parametrize(
    ("ikm", "salt", "info", "length", "okm"),
    [
        # RFC 5869 A.1
        (
            "0b" * 22,
            "000102030405060708090a0b0c",
            "f0f1f2f3f4f5f6f7f8f9",
            42,
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        # RFC 5869 A.3: empty salt and info, as in data_key and private_wrap_key
        (
            "0b" * 22,
            "",
            "",
            42,
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ],
    ids=["A.1", "A.3"],
)
def test_rfc5869_hkdf_sha256(ikm: str, salt: str, info: str, length: int, okm: str) -> None:
    derived = HKDF(
        hashes.SHA256(), length, salt=bytes.fromhex(salt) or None, info=bytes.fromhex(info)
    ).derive(bytes.fromhex(ikm))
    assert derived.hex() == okm


@pytest.mark.parametrize(
    ("plaintext", "sealed"),
    [
        ("", "530f8afbc74536b9a963b4f1c4cb738b"),
        ("00" * 16, "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"),
    ],
    ids=["gcm-13", "gcm-14"],
)
def test_aes256gcm_zero_key_zero_nonce(plaintext: str, sealed: str) -> None:
    aead = AESGCM(bytes(32))
    assert aead.encrypt(bytes(12), bytes.fromhex(plaintext), None).hex() == sealed


def test_labelled_wrap_follows_the_documented_formula(
    private_keys: dict[CurveName, PrivateKey],
) -> None:
    key = private_keys["x25519"]
    recipient = public_info(key)
    wrapped = wrap_key(MESSAGE_KEY, recipient, CONTEXT, label=LABEL_BLOB_KEY_WRAP)
    shared = ecdh(key, load_public_key("x25519", wrapped.ephemeral))
    wrap = HKDF(
        hashes.SHA256(),
        32,
        salt=wrapped.ephemeral + recipient.encoded,
        info=b"cryptmail/v3/blob-key-wrap" + CONTEXT,
    ).derive(shared)
    assert AESGCM(wrap).decrypt(bytes(12), wrapped.wrapped, CONTEXT) == MESSAGE_KEY


def test_box_follows_the_documented_formula() -> None:
    box = seal_box(b"details", public_info(_KEY), CONTEXT)
    assert box[:2] == bytes([3, 32])
    wrapped = WrappedKey(box[2:34], box[34:82])
    message_key = unwrap_key(wrapped, _KEY, CONTEXT, label=b"cryptmail/v3/sealed-box")
    body = AESGCM(message_key).decrypt(bytes(12), box[82:], b"cryptmail/v3/sealed-box" + CONTEXT)
    assert body == b"details"


def _legacy_box(plaintext: bytes, key: PrivateKey, context: bytes) -> bytes:
    """A version-1 box as it was written before the sealed box had its own label."""
    message_key = os.urandom(32)
    wrapped = wrap_key(message_key, public_info(key), context)
    body = AESGCM(message_key).encrypt(bytes(12), plaintext, context)
    return bytes([len(wrapped.ephemeral)]) + wrapped.ephemeral + wrapped.wrapped + body


def test_version_1_boxes_still_open(
    private_keys: dict[CurveName, PrivateKey], curve: CurveName
) -> None:
    key = private_keys[curve]
    old = _legacy_box(b"old details", key, b"key-event|7")
    assert open_box(old, key, CONTEXT, legacy=b"key-event|7") == b"old details"
    assert open_box(old, key, b"key-event|7") == b"old details"
    with pytest.raises(DecryptionFailed):
        open_box(old, key, CONTEXT, legacy=b"key-event|8")
    # A version-3 box never opens with the legacy context, nor as version 1.
    new = seal_box(b"new details", public_info(key), CONTEXT)
    with pytest.raises(DecryptionFailed):
        open_box(new, key, b"other", legacy=CONTEXT)
    with pytest.raises(DecryptionFailed):
        open_box(new[1:], key, CONTEXT)


def test_a_box_wrap_is_no_blob_wrap_and_back(private_keys: dict[CurveName, PrivateKey]) -> None:
    """Label separation: the same key, message key and context under two purposes."""
    key = private_keys["x25519"]
    for made, tried in (
        (LABEL_SEALED_BOX, LABEL_BLOB_KEY_WRAP),
        (LABEL_BLOB_KEY_WRAP, LABEL_SEALED_BOX),
        (LABEL_BLOB_KEY_WRAP, LABEL_ECIES_WRAP),
        (LABEL_ECIES_WRAP, LABEL_SEALED_BOX),
    ):
        wrapped = wrap_key(MESSAGE_KEY, public_info(key), CONTEXT, label=made)
        assert unwrap_key(wrapped, key, CONTEXT, label=made) == MESSAGE_KEY
        with pytest.raises(DecryptionFailed):
            unwrap_key(wrapped, key, CONTEXT, label=tried)
    # A whole event box's wrapped key, put in a blob header, does not unwrap there.
    box = seal_box(b"x", public_info(key), CONTEXT)
    with pytest.raises(DecryptionFailed):
        unwrap_key(WrappedKey(box[2:34], box[34:82]), key, CONTEXT, label=LABEL_BLOB_KEY_WRAP)


def test_wrap_follows_the_documented_formula(private_keys: dict[CurveName, PrivateKey]) -> None:
    key = private_keys["secp384r1"]
    recipient = public_info(key)
    wrapped = wrap_key(MESSAGE_KEY, recipient, CONTEXT)
    shared = ecdh(key, load_public_key("secp384r1", wrapped.ephemeral))
    wrap = HKDF(
        hashes.SHA256(),
        32,
        salt=wrapped.ephemeral + recipient.encoded,
        info=b"cryptmail/v1/ecies-wrap" + CONTEXT,
    ).derive(shared)
    assert AESGCM(wrap).decrypt(bytes(12), wrapped.wrapped, CONTEXT) == MESSAGE_KEY


# --- round-trips --------------------------------------------------------------------


def test_wrap_round_trip(private_keys: dict[CurveName, PrivateKey], curve: CurveName) -> None:
    key = private_keys[curve]
    wrapped = wrap_key(MESSAGE_KEY, public_info(key), CONTEXT)
    assert len(wrapped.ephemeral) == EPHEMERAL_SIZES[curve]
    assert len(wrapped.wrapped) == 48
    assert unwrap_key(wrapped, key, CONTEXT) == MESSAGE_KEY


def test_every_wrap_uses_a_fresh_ephemeral_key(private_keys: dict[CurveName, PrivateKey]) -> None:
    recipient = public_info(private_keys["x25519"])
    first = wrap_key(MESSAGE_KEY, recipient, CONTEXT)
    second = wrap_key(MESSAGE_KEY, recipient, CONTEXT)
    assert first.ephemeral != second.ephemeral
    assert first.wrapped != second.wrapped


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_only_32_byte_message_keys_are_wrapped(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        wrap_key(bytes(length), public_info(_KEY), CONTEXT)


# --- failures -----------------------------------------------------------------------


def test_wrong_context_fails(private_keys: dict[CurveName, PrivateKey], curve: CurveName) -> None:
    key = private_keys[curve]
    wrapped = wrap_key(MESSAGE_KEY, public_info(key), CONTEXT)
    for context in (b"", CONTEXT[:-1], CONTEXT + b"\x00", bytes(16)):
        with pytest.raises(DecryptionFailed):
            unwrap_key(wrapped, key, context)


def test_wrong_key_fails(
    private_keys: dict[CurveName, PrivateKey],
    other_private_keys: dict[CurveName, PrivateKey],
    curve: CurveName,
) -> None:
    wrapped = wrap_key(MESSAGE_KEY, public_info(private_keys[curve]), CONTEXT)
    with pytest.raises(DecryptionFailed):
        unwrap_key(wrapped, other_private_keys[curve], CONTEXT)
    for other in curve_names():
        if other != curve:
            with pytest.raises(DecryptionFailed):
                unwrap_key(wrapped, private_keys[other], CONTEXT)


def test_every_flipped_bit_fails(
    private_keys: dict[CurveName, PrivateKey], curve: CurveName
) -> None:
    key = private_keys[curve]
    wrapped = wrap_key(MESSAGE_KEY, public_info(key), CONTEXT)
    joined = wrapped.ephemeral + wrapped.wrapped
    split = len(wrapped.ephemeral)
    for position in range(len(joined)):
        bad = bytearray(joined)
        bad[position] ^= 1 << (position % 8)
        with pytest.raises(DecryptionFailed):
            unwrap_key(WrappedKey(bytes(bad[:split]), bytes(bad[split:])), key, CONTEXT)


@pytest.mark.parametrize("length", [0, 1, 16, 47, 49, 96])
def test_wrong_length_wrapped_key_fails_before_ecdh(
    private_keys: dict[CurveName, PrivateKey],
    curve: CurveName,
    length: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = private_keys[curve]
    wrapped = wrap_key(MESSAGE_KEY, public_info(key), CONTEXT)

    def no_ecdh(*args: object) -> bytes:
        raise AssertionError("ECDH ran on a wrapped key of the wrong length")

    monkeypatch.setattr(ecies_module, "ecdh", no_ecdh)
    bad = WrappedKey(wrapped.ephemeral, (wrapped.wrapped * 2)[:length])
    with pytest.raises(DecryptionFailed):
        unwrap_key(bad, key, CONTEXT)


@pytest.mark.parametrize(
    "ephemeral",
    [b"", bytes(31), bytes(32), b"\x01" + bytes(31), bytes(33), b"\xff" * 32],
    ids=["empty", "short", "zero", "one", "long", "p-minus"],
)
def test_bad_x25519_ephemeral_keys_fail_opaquely(ephemeral: bytes) -> None:
    wrapped = wrap_key(MESSAGE_KEY, public_info(_KEY), CONTEXT)
    with pytest.raises(DecryptionFailed):
        unwrap_key(WrappedKey(ephemeral, wrapped.wrapped), _KEY, CONTEXT)


# --- sealed box ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 100, 5000])
def test_box_round_trip(
    private_keys: dict[CurveName, PrivateKey], curve: CurveName, size: int
) -> None:
    key = private_keys[curve]
    plaintext = os.urandom(size)
    box = seal_box(plaintext, public_info(key), CONTEXT)
    eph = EPHEMERAL_SIZES[curve]
    assert box[0] == 3  # SEALED_BOX_VERSION
    assert box[1] == eph
    assert len(box) == 2 + eph + 48 + size + 16
    assert open_box(box, key, CONTEXT) == plaintext


def test_box_refuses_wrong_key_context_and_every_truncation(
    private_keys: dict[CurveName, PrivateKey],
    other_private_keys: dict[CurveName, PrivateKey],
) -> None:
    key = private_keys["prime256v1"]
    box = seal_box(b'{"ip": "192.0.2.1", "name": ""}', public_info(key), CONTEXT)
    with pytest.raises(DecryptionFailed):
        open_box(box, other_private_keys["prime256v1"], CONTEXT)
    with pytest.raises(DecryptionFailed):
        open_box(box, key, b"key-event|2")
    for length in range(len(box)):
        with pytest.raises(DecryptionFailed):
            open_box(box[:length], key, CONTEXT)
    with pytest.raises(DecryptionFailed):
        open_box(box + b"\x00", key, CONTEXT)


@settings(max_examples=100, deadline=None)
@given(position=st.integers(0, 200), bit=st.integers(0, 7))
def test_box_flipped_bit_fails(position: int, bit: int) -> None:
    box = bytearray(_BOX)
    box[position % len(box)] ^= 1 << bit
    with pytest.raises(DecryptionFailed):
        open_box(bytes(box), _KEY, CONTEXT)


_BOX = seal_box(b"sealed event details", public_info(_KEY), CONTEXT)
