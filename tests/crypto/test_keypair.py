"""Key pairs: generation, compact encodings, key ids, PKCS#8 and ECDH.

Known answers: RFC 7748 section 5.2 and 6.1 (X25519) and RFC 5903 section 8.1 (ECDH on
P-256), through `ecdh`.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

from cryptmail.crypto import (
    CurveName,
    PrivateKey,
    PublicKeyInfo,
    curve_names,
    export_private_key_pem,
    generate_private_key,
    load_public_key,
    public_info,
)
from cryptmail.crypto._keypair import (
    curve_of,
    ecdh,
    encode_public_key,
    load_private_key,
    serialize_private_key,
)
from cryptmail.crypto._labels import CURVE_IDS
from cryptmail.errors import MalformedObject

ENCODED_SIZES = {"x25519": 32, "prime256v1": 33, "secp384r1": 49, "secp521r1": 67}


def test_curve_names_are_the_stored_ids() -> None:
    assert curve_names() == ("x25519", "prime256v1", "secp384r1", "secp521r1")
    assert tuple(CURVE_IDS) == curve_names()


def test_generate_and_encode(private_keys: dict[CurveName, PrivateKey], curve: CurveName) -> None:
    key = private_keys[curve]
    assert curve_of(key) == curve == curve_of(key.public_key())
    info = public_info(key)
    assert info == public_info(key.public_key())
    assert info.curve == curve
    assert len(info.encoded) == ENCODED_SIZES[curve]
    if curve != "x25519":
        assert info.encoded[0] in (2, 3)  # compressed point
    assert encode_public_key(info.load()) == info.encoded


def test_key_id_is_the_documented_hash(
    private_keys: dict[CurveName, PrivateKey], curve: CurveName
) -> None:
    info = public_info(private_keys[curve])
    assert info.key_id == hashlib.sha256(curve.encode() + b"\x00" + info.encoded).digest()
    assert re.fullmatch(r"([0-9a-f]{4}:){7}[0-9a-f]{4}", info.fingerprint)
    assert info.fingerprint.replace(":", "") == info.key_id.hex()[:32]


def test_key_ids_differ_by_curve_name() -> None:
    raw = bytes(range(1, 33))
    assert PublicKeyInfo("x25519", raw).key_id != PublicKeyInfo("prime256v1", raw).key_id


def test_unknown_curve_is_refused() -> None:
    with pytest.raises(MalformedObject):
        generate_private_key("secp256k1")  # type: ignore[arg-type]
    with pytest.raises(MalformedObject):
        load_public_key("secp256k1", bytes(33))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("curve", "encoded"),
    [
        ("x25519", b""),
        ("x25519", bytes(31)),
        ("x25519", bytes(33)),
        ("prime256v1", b""),
        ("prime256v1", b"\x00"),
        ("prime256v1", b"\x02" + (1).to_bytes(32, "big")),  # x = 1 is not on P-256
        ("prime256v1", b"\x02" + b"\xff" * 32),
        ("prime256v1", b"\x04" + bytes(64)),
        ("prime256v1", b"\x06" + bytes(32)),
        ("secp384r1", b"\x02" + bytes(32)),  # too short
        ("secp384r1", b"\x02" + (1).to_bytes(48, "big")),  # x = 1 is not on P-384
        ("secp521r1", b"\x03" + (3).to_bytes(66, "big")),  # x = 3 is not on P-521
    ],
)
def test_invalid_public_keys_are_malformed(curve: CurveName, encoded: bytes) -> None:
    with pytest.raises(MalformedObject):
        load_public_key(curve, encoded)


def test_public_key_of_another_curve_is_malformed(
    private_keys: dict[CurveName, PrivateKey],
) -> None:
    encoded = public_info(private_keys["prime256v1"]).encoded
    with pytest.raises(MalformedObject):
        load_public_key("secp384r1", encoded)


def test_pkcs8_round_trip(private_keys: dict[CurveName, PrivateKey], curve: CurveName) -> None:
    key = private_keys[curve]
    der = serialize_private_key(key)
    loaded = load_private_key(der)
    assert public_info(loaded) == public_info(key)


def test_garbage_and_foreign_private_keys_are_malformed() -> None:
    for der in (b"", b"\x30\x00", bytes(48)):
        with pytest.raises(MalformedObject):
            load_private_key(der)
    for foreign in (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ed25519.Ed25519PrivateKey.generate(),
    ):
        der = foreign.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with pytest.raises(MalformedObject, match="not an EC or X25519 key"):
            load_private_key(der)


def test_pem_export(private_keys: dict[CurveName, PrivateKey], curve: CurveName) -> None:
    key = private_keys[curve]
    plain = export_private_key_pem(key, None)
    assert plain.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(plain, password=None)
    assert public_info(loaded) == public_info(key)  # type: ignore[arg-type]
    locked = export_private_key_pem(key, b"export passphrase")
    assert locked.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(locked, password=None)
    loaded = serialization.load_pem_private_key(locked, password=b"export passphrase")
    assert public_info(loaded) == public_info(key)  # type: ignore[arg-type]


def test_ecdh_agrees(
    private_keys: dict[CurveName, PrivateKey],
    other_private_keys: dict[CurveName, PrivateKey],
    curve: CurveName,
) -> None:
    a, b = private_keys[curve], other_private_keys[curve]
    shared = ecdh(a, b.public_key())
    assert shared == ecdh(b, a.public_key())
    size = {"x25519": 32, "prime256v1": 32, "secp384r1": 48, "secp521r1": 66}[curve]
    assert len(shared) == size


def test_ecdh_refuses_mixed_curves(private_keys: dict[CurveName, PrivateKey]) -> None:
    for mine in curve_names():
        for theirs in curve_names():
            if mine != theirs:
                with pytest.raises(MalformedObject):
                    ecdh(private_keys[mine], private_keys[theirs].public_key())


def test_ecdh_refuses_a_low_order_x25519_point(private_keys: dict[CurveName, PrivateKey]) -> None:
    zero = x25519.X25519PublicKey.from_public_bytes(bytes(32))
    with pytest.raises(MalformedObject, match="low-order"):
        ecdh(private_keys["x25519"], zero)


def test_rfc7748_x25519_vectors() -> None:
    h = bytes.fromhex
    # Section 5.2, first scalar multiplication.
    scalar = x25519.X25519PrivateKey.from_private_bytes(
        h("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    )
    u = x25519.X25519PublicKey.from_public_bytes(
        h("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    )
    assert ecdh(scalar, u) == h("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
    # Section 6.1, Diffie-Hellman.
    alice = x25519.X25519PrivateKey.from_private_bytes(
        h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    bob = x25519.X25519PrivateKey.from_private_bytes(
        h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    )
    assert public_info(alice).encoded == h(
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    )
    assert public_info(bob).encoded == h(
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    )
    shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert ecdh(alice, bob.public_key()) == shared == ecdh(bob, alice.public_key())


def test_rfc5903_p256_ecdh_vector() -> None:
    i = ec.derive_private_key(
        int("c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433", 16),
        ec.SECP256R1(),
    )
    gr = ec.EllipticCurvePublicNumbers(
        int("d12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63", 16),
        int("56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab", 16),
        ec.SECP256R1(),
    ).public_key()
    # Our compressed encoding of g^r loads back to the same point.
    assert load_public_key("prime256v1", encode_public_key(gr)) == gr
    assert ecdh(i, gr) == bytes.fromhex(
        "d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de"
    )
