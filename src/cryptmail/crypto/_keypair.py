"""User key pairs: generation, encodings, key ids and ECDH.

Public keys are encoded compactly: raw 32 bytes for X25519, the compressed X9.62 point
for the NIST curves. A key id is SHA-256 over the curve name and that encoding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TypeAlias, cast

from cryptography.hazmat.primitives.asymmetric import ec, x25519

from cryptmail.config import Curve
from cryptmail.crypto._labels import CURVE_IDS
from cryptmail.errors import MalformedObject

# The one list of curve names is config's (shared, importable by every layer; config
# may import no layer, so it cannot take it from here).
CurveName: TypeAlias = Curve

_NIST: dict[str, ec.EllipticCurve] = {
    "prime256v1": ec.SECP256R1(),
    "secp384r1": ec.SECP384R1(),
    "secp521r1": ec.SECP521R1(),
}

PrivateKey = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = x25519.X25519PublicKey | ec.EllipticCurvePublicKey
PrivateKeyTypes = (x25519.X25519PrivateKey, ec.EllipticCurvePrivateKey)


@dataclass(frozen=True)
class PublicKeyInfo:
    """A user public key as stored: curve name and compact encoding."""

    curve: CurveName
    encoded: bytes

    @property
    def key_id(self) -> bytes:
        """32-byte id: SHA-256(curve name || 0x00 || encoding)."""
        return hashlib.sha256(self.curve.encode() + b"\x00" + self.encoded).digest()

    @property
    def fingerprint(self) -> str:
        """The key id as grouped hex, for people to compare."""
        hexid = self.key_id.hex()
        return ":".join(hexid[i : i + 4] for i in range(0, 32, 4))

    def load(self) -> PublicKey:
        return load_public_key(self.curve, self.encoded)


def curve_names() -> tuple[CurveName, ...]:
    return cast(tuple[CurveName, ...], tuple(CURVE_IDS))


def generate_private_key(curve: CurveName) -> PrivateKey:
    """A fresh private key on `curve`."""
    if curve == "x25519":
        return x25519.X25519PrivateKey.generate()
    try:
        return ec.generate_private_key(_NIST[curve])
    except KeyError:
        raise MalformedObject(f"unknown curve {curve!r}") from None


def curve_of(key: PrivateKey | PublicKey) -> CurveName:
    if isinstance(key, x25519.X25519PrivateKey | x25519.X25519PublicKey):
        return "x25519"
    name = key.curve.name
    return cast(CurveName, {"secp256r1": "prime256v1"}.get(name, name))


def encode_public_key(key: PublicKey) -> bytes:
    if isinstance(key, x25519.X25519PublicKey):
        return key.public_bytes_raw()
    from cryptography.hazmat.primitives import serialization  # see serialize_private_key

    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)


def public_info(key: PrivateKey | PublicKey) -> PublicKeyInfo:
    public = key.public_key() if isinstance(key, PrivateKeyTypes) else key
    return PublicKeyInfo(curve_of(public), encode_public_key(public))


def load_public_key(curve: CurveName, encoded: bytes) -> PublicKey:
    """Decode a compact public key; MalformedObject if it is not a valid point."""
    try:
        if curve == "x25519":
            return x25519.X25519PublicKey.from_public_bytes(encoded)
        return ec.EllipticCurvePublicKey.from_encoded_point(_NIST[curve], encoded)
    except (ValueError, KeyError) as exc:
        raise MalformedObject(f"not a valid {curve} public key") from exc


def serialize_private_key(key: PrivateKey) -> bytes:
    """PKCS#8 DER, unencrypted: only ever passed on to be sealed (see _account.py)."""
    # Imported where used: the package loads bcrypt (for OpenSSH keys), and a delivery
    # worker, which seals to X25519 keys, needs none of it.
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(der: bytes) -> PrivateKey:
    from cryptography.hazmat.primitives import serialization  # see serialize_private_key

    try:
        key = serialization.load_der_private_key(der, password=None)
    except ValueError as exc:
        raise MalformedObject("stored private key is not PKCS#8 DER") from exc
    if not isinstance(key, PrivateKeyTypes):
        raise MalformedObject("stored private key is not an EC or X25519 key")
    return key


def export_private_key_pem(key: PrivateKey, passphrase: bytes | None) -> bytes:
    """PKCS#8 PEM, encrypted with `passphrase` when one is given (for `key export`)."""
    from cryptography.hazmat.primitives import serialization  # see serialize_private_key

    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def ecdh(private_key: PrivateKey, peer: PublicKey) -> bytes:
    """The raw shared secret; MalformedObject if the curves differ or the peer is a
    low-order X25519 point (all-zero shared secret)."""
    if isinstance(private_key, x25519.X25519PrivateKey):
        if not isinstance(peer, x25519.X25519PublicKey):
            raise MalformedObject("X25519 key used with a non-X25519 peer")
        try:
            return private_key.exchange(peer)
        except ValueError as exc:
            # OpenSSL refuses an all-zero result (RFC 7748 section 6.1); a stored
            # ephemeral key must fail like any other bad header, not as a ValueError.
            raise MalformedObject("X25519 peer is a low-order point") from exc
    if not isinstance(peer, ec.EllipticCurvePublicKey) or peer.curve.name != (
        private_key.curve.name
    ):
        raise MalformedObject("EC key used with a peer on another curve")
    return private_key.exchange(ec.ECDH(), peer)
