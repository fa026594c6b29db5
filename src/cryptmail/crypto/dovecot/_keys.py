"""Dovecot's key types, key ids and scalar encoding (spec §4.1, §4.4).

A key id is SHA-256 of the DER SubjectPublicKeyInfo with the EC point compressed (the
"new" id of `2:` keys, v2 files and attribute names), or, for v1, SHA-256 of the
upper-case hex of the compressed point (the "old" id). EC scalars travel as OpenSSL
MPIs: a u32 length, then a minimal big-endian magnitude with a 00 byte before a set top
bit.
"""

from __future__ import annotations

import hashlib
from typing import TypeAlias

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from cryptmail.crypto.dovecot._constants import (
    CURVE_OIDS,
)
from cryptmail.crypto.dovecot._der import compressed_ec_spki
from cryptmail.errors import (
    DecryptionFailed,
    DovecotFormatError,
)

DovecotPrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
DovecotPublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_CURVES: dict[str, ec.EllipticCurve] = {
    "prime256v1": ec.SECP256R1(),
    "secp384r1": ec.SECP384R1(),
    "secp521r1": ec.SECP521R1(),
    "secp256k1": ec.SECP256K1(),
}
CURVE_BY_OID = {oid: name for name, oid in CURVE_OIDS.items()}
# OpenSSL's default OAEP (SHA-1, MGF1-SHA-1, no label), which Dovecot uses for every RSA
# wrap. The format fixes it; OAEP does not rely on SHA-1's collision resistance.
RSA_OAEP = padding.OAEP(
    mgf=padding.MGF1(hashes.SHA1()),  # noqa: S303 - fixed by the format, see above
    algorithm=hashes.SHA1(),  # noqa: S303 - fixed by the format, see above
    label=None,
)


# --- curves, public keys, ids -------------------------------------------------------


def curve_name(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    """OpenSSL's short name of the key's curve, as `mail_crypt_curve` spells it."""
    name = key.curve.name
    return "prime256v1" if name == "secp256r1" else name


def curve_by_name(name: str) -> ec.EllipticCurve:
    try:
        return _CURVES[name]
    except KeyError:
        raise DovecotFormatError(
            f"curve {name!r} is not supported; use one of {', '.join(sorted(_CURVES))}"
        ) from None


def generate_dovecot_key(curve: str = "secp521r1") -> ec.EllipticCurvePrivateKey:
    """A fresh EC key on `curve` (an OpenSSL short name, as in `mail_crypt_curve`)."""
    return ec.generate_private_key(curve_by_name(curve))


def public_key_of(key: DovecotPrivateKey | DovecotPublicKey) -> DovecotPublicKey:
    """The public half of `key` (a public key is returned as it is)."""
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        return key.public_key()
    return key


def _compressed_point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)


def public_key_der(key: DovecotPrivateKey | DovecotPublicKey) -> bytes:
    """DER SubjectPublicKeyInfo as Dovecot hashes it: EC points compressed (§4.1)."""
    public = public_key_of(key)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return compressed_ec_spki(CURVE_OIDS[curve_name(public)], _compressed_point(public))
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: DovecotPrivateKey | DovecotPublicKey) -> str:
    """The new-style key id: lowercase hex SHA-256 of `public_key_der(key)`."""
    return hashlib.sha256(public_key_der(key)).hexdigest()


def old_key_id(key: DovecotPrivateKey | DovecotPublicKey) -> str:
    """The old-style (v1) id: SHA-256 of the upper-case hex compressed point. EC only.

    Raises DovecotFormatError for an RSA key, which has no old-style id.
    """
    public = public_key_of(key)
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise DovecotFormatError("RSA keys have no old-style (v1) key id")
    return hashlib.sha256(_compressed_point(public).hex().upper().encode("ascii")).hexdigest()


def ecdh_secret(private_key: ec.EllipticCurvePrivateKey, peer_point: bytes) -> bytes:
    """ECDH x coordinate (fixed width) with a peer point in X9.62 form, either encoding.

    Raises DecryptionFailed if the bytes are not a point on the private key's curve.
    """
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(private_key.curve, peer_point)
    except ValueError:
        raise DecryptionFailed("Dovecot ephemeral public key") from None
    return private_key.exchange(ec.ECDH(), peer)


# --- small encodings ----------------------------------------------------------------


def mpi_encode(value: int) -> bytes:
    """OpenSSL MPI of a non-negative integer: u32 length, minimal big-endian magnitude,
    with a 00 byte in front when the top bit would be set (it is the sign bit)."""
    if value < 0:
        raise ValueError("MPI encoding of negative numbers is not used by Dovecot")
    magnitude = value.to_bytes((value.bit_length() + 7) // 8, "big")
    if magnitude and magnitude[0] & 0x80:
        magnitude = b"\x00" + magnitude
    return len(magnitude).to_bytes(4, "big") + magnitude


def mpi_decode(data: bytes) -> int:
    """The integer of an OpenSSL MPI that fills `data` exactly.

    Raises ValueError if the length word does not match or the number is negative.
    """
    if len(data) < 4 or int.from_bytes(data[:4], "big") != len(data) - 4:
        raise ValueError("MPI length does not match its data")
    magnitude = data[4:]
    if magnitude and magnitude[0] & 0x80:
        raise ValueError("negative MPI")
    return int.from_bytes(magnitude, "big")


def export_private_key_pem(key: DovecotPrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM, byte-identical to `doveadm mailbox cryptokey export`."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
