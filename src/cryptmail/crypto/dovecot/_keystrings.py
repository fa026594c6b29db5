"""Dovecot key strings: `2:` and legacy `1<TAB>` public and private keys (spec §4.2-4.6).

A `2:` private key is locked in one of three ways (the "enctype"): not at all (0), to
another key by ECDH (1; folder keys are locked to a user key this way), or with a
password (2; user keys). Either way the lock is AES-256-CTR without a MAC, so the only
integrity check is that the unlocked key has the id written in the string's last field;
a wrong password shows up there (or earlier, as a malformed MPI).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cryptmail.crypto.dovecot._constants import (
    CURVE_NIDS,
    CURVE_OIDS,
    KEY_CIPHER,
    KEY_ENCTYPE_KEY,
    KEY_ENCTYPE_NONE,
    KEY_ENCTYPE_PASSWORD,
    KEY_ID_HEX_SIZE,
    KEY_KDF_HASH,
    KEY_PBKDF2_ROUNDS,
    KEY_SALT_SIZE,
    KEY_V1_PBKDF2_ROUNDS,
    KEY_VERSION_1,
    KEY_VERSION_2,
    MAX_PBKDF2_ROUNDS,
    OID_RSA_ENCRYPTION,
)
from cryptmail.crypto.dovecot._keys import (
    CURVE_BY_OID,
    RSA_OAEP,
    DovecotPrivateKey,
    DovecotPublicKey,
    curve_by_name,
    curve_name,
    ecdh_secret,
    key_id,
    mpi_decode,
    mpi_encode,
    old_key_id,
    public_key_der,
)
from cryptmail.errors import (
    DecryptionFailed,
    DovecotFormatError,
    DovecotKeyNotFound,
    DovecotWrongPassword,
)
from cryptmail.secret import SecretBytes

_KDF_HASHES = frozenset({"sha1", "sha256", "sha384", "sha512"})
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_SPLIT = re.compile(r"[:\t]")


def _unhex(field: str, what: str) -> bytes:
    if not _HEX.fullmatch(field):
        raise DovecotFormatError(f"{what} in a Dovecot key string is not hex")
    return bytes.fromhex(field)


def _rounds(field: str) -> int:
    if not field.isdigit() or not 1 <= int(field) <= MAX_PBKDF2_ROUNDS:
        raise DovecotFormatError(
            f"Dovecot key string asks for {field!r} PBKDF2 rounds; "
            f"accepted are 1 to {MAX_PBKDF2_ROUNDS}"
        )
    return int(field)


def _ctr(key: bytes, counter_block: bytes, data: bytes) -> bytes:
    # CTR is its own inverse: the same call locks and unlocks.
    transform = Cipher(algorithms.AES(key), modes.CTR(counter_block)).encryptor()
    return transform.update(data) + transform.finalize()


# --- key string structure -----------------------------------------------------------


@dataclass(frozen=True)
class KeyStringInfo:
    """What a key string is, read without unlocking anything (spec §4.2).

    `key_id` is the last field (new-style id for `2:`, old-style for `1:`);
    `encryption_key_id` names the key that unlocks an enctype 1 private key.
    """

    version: int
    kind: Literal["public", "private"]
    enctype: int | None
    key_id: str
    encryption_key_id: str | None = None


_V2_PRIVATE_FIELDS = {KEY_ENCTYPE_NONE: 5, KEY_ENCTYPE_PASSWORD: 9, KEY_ENCTYPE_KEY: 11}
_V1_PRIVATE_FIELDS = {KEY_ENCTYPE_NONE: 5, KEY_ENCTYPE_PASSWORD: 6, KEY_ENCTYPE_KEY: 7}


def _fields(text: str) -> list[str]:
    text = text.strip()
    if text.startswith(KEY_VERSION_2 + ":") or text.startswith(KEY_VERSION_1 + "\t"):
        return _SPLIT.split(text)
    if text.startswith(KEY_VERSION_1 + ":"):
        raise DovecotFormatError("a version 1 Dovecot key string uses TAB, not ':'")
    if text.startswith(KEY_VERSION_2 + "\t"):
        raise DovecotFormatError("a version 2 Dovecot key string uses ':', not TAB")
    raise DovecotFormatError("not a Dovecot key string (expected '2:' or '1<TAB>')")


def _info(fields: list[str]) -> KeyStringInfo:
    version = int(fields[0])
    count = len(fields)
    if count < 3:
        raise DovecotFormatError(f"Dovecot key string version {version} is too short")
    public_count = 3 if version == 2 else 4
    per_enctype = _V2_PRIVATE_FIELDS if version == 2 else _V1_PRIVATE_FIELDS
    if count == public_count:
        info = KeyStringInfo(version, "public", None, fields[-1])
    else:
        enctype = int(fields[2]) if fields[2] in ("0", "1", "2") else -1
        if per_enctype.get(enctype) != count:
            raise DovecotFormatError(
                f"Dovecot key string version {version} with {count} fields and "
                f"encryption type {fields[2][:8]!r} is not a known kind of key"
            )
        encrypted_by = fields[-2] if enctype == KEY_ENCTYPE_KEY else None
        info = KeyStringInfo(version, "private", enctype, fields[-1], encrypted_by)
    for key_ref in (info.key_id, info.encryption_key_id):
        if key_ref is not None and (len(key_ref) != KEY_ID_HEX_SIZE or not _HEX.fullmatch(key_ref)):
            raise DovecotFormatError("a key id in a Dovecot key string is not 64 hex digits")
    return info


def inspect_key_string(text: str) -> KeyStringInfo:
    """Version, kind, encryption type and ids of a key string, without unlocking it.

    Raises DovecotFormatError if `text` is not a well-formed `1` or `2` key string.
    """
    return _info(_fields(text))


# --- public key strings -------------------------------------------------------------


def load_public_key_string(text: str) -> DovecotPublicKey:
    """Parse a `2:` (or legacy `1<TAB>`) public key string and check its id.

    Raises DovecotFormatError if it is malformed, not EC/RSA, or its id does not match.
    """
    fields = _fields(text)
    info = _info(fields)
    if info.kind != "public":
        raise DovecotFormatError("expected a public key string, got a private key string")
    public: DovecotPublicKey
    if info.version == 2:
        try:
            loaded = serialization.load_der_public_key(_unhex(fields[1], "public key"))
        except ValueError:
            raise DovecotFormatError("the DER in a `2:` public key string is invalid") from None
        if not isinstance(loaded, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise DovecotFormatError("a `2:` public key must be EC or RSA")
        public = loaded
        expected = key_id(public)
    else:
        curve = curve_by_name(_nidcurve_by_name(fields[1]))
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(
                curve, _unhex(fields[2], "public point")
            )
        except ValueError:
            raise DovecotFormatError("the point in a `1` public key string is invalid") from None
        expected = old_key_id(public)
    if expected != info.key_id:
        raise DovecotFormatError(f"public key string for {info.key_id} holds another key")
    return public


def dump_public_key_string(key: DovecotPrivateKey | DovecotPublicKey) -> str:
    """The `2:` public key string of `key`: hex of the compressed-point SPKI, then its id."""
    der = public_key_der(key)
    return f"{KEY_VERSION_2}:{der.hex()}:{hashlib.sha256(der).hexdigest()}"


def _nidcurve_by_name(field: str) -> str:
    if not field.isdigit() or int(field) not in CURVE_NIDS:
        raise DovecotFormatError(f"unknown curve NID {field[:8]!r} in a `1` key string")
    return CURVE_NIDS[int(field)]


# --- private key strings ------------------------------------------------------------


def _raw_private(key: DovecotPrivateKey) -> tuple[str, bytes]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        scalar = key.private_numbers().private_value
        return CURVE_OIDS[curve_name(key)], mpi_encode(scalar)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return OID_RSA_ENCRYPTION, der


def _private_from_raw(algorithm_oid: str, raw: bytes) -> DovecotPrivateKey:
    """Build the key from its raw form; ValueError if the bytes are not a valid key."""
    if algorithm_oid == OID_RSA_ENCRYPTION:
        try:
            loaded = serialization.load_der_private_key(raw, password=None)
        except (TypeError, ValueError) as exc:
            raise ValueError("not an RSA private key") from exc
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError("not an RSA private key")
        return loaded
    return ec.derive_private_key(mpi_decode(raw), curve_by_name(_oidcurve_by_name(algorithm_oid)))


def _oidcurve_by_name(oid: str) -> str:
    try:
        return CURVE_BY_OID[oid]
    except KeyError:
        raise DovecotFormatError(f"unknown key algorithm {oid[:40]!r} in a `2:` key") from None


def _key_secret(
    decryption_key: DovecotPrivateKey | None, wanted_id: str, peer_field: str, version: int
) -> bytes:
    if decryption_key is None:
        raise DovecotKeyNotFound(
            f"the private key is locked to key {wanted_id}, which is not available; "
            "unlock that key first (for folder keys: the user key, with its password)"
        )
    ids = {key_id(decryption_key)}
    if version == 1 and isinstance(decryption_key, ec.EllipticCurvePrivateKey):
        ids.add(old_key_id(decryption_key))
    if wanted_id not in ids:
        raise DovecotKeyNotFound(
            f"the private key is locked to key {wanted_id}, not to the key given "
            f"({key_id(decryption_key)})"
        )
    peer = _unhex(peer_field, "ephemeral key")
    if isinstance(decryption_key, ec.EllipticCurvePrivateKey):
        return ecdh_secret(decryption_key, peer)
    try:
        return decryption_key.decrypt(peer, RSA_OAEP)
    except ValueError:
        raise DecryptionFailed("Dovecot RSA-locked private key") from None


def load_private_key_string(
    text: str,
    *,
    password: SecretBytes | None = None,
    decryption_key: DovecotPrivateKey | None = None,
) -> DovecotPrivateKey:
    """Unlock a `2:` (or legacy `1<TAB>`) private key string and check its key id.

    `password` unlocks enctype 2, `decryption_key` enctype 1 (the key the string names
    in its second-to-last field); enctype 0 needs neither.

    Raises DovecotFormatError if the string is malformed; DovecotWrongPassword if the
    password is missing or does not unlock it; DovecotKeyNotFound if the decryption key
    is missing or another key; DecryptionFailed if an enctype 1 or 0 key does not match
    its id after unlocking (the string was changed).
    """
    fields = _fields(text)
    info = _info(fields)
    if info.kind != "private":
        raise DovecotFormatError("expected a private key string, got a public key string")
    if info.version == 1:
        return _load_private_v1(fields, info, password, decryption_key)
    algorithm_oid = fields[1]
    if algorithm_oid != OID_RSA_ENCRYPTION:
        _oidcurve_by_name(algorithm_oid)
    if info.enctype == KEY_ENCTYPE_NONE:
        raw = _unhex(fields[3], "private key")
    else:
        if fields[3] != KEY_CIPHER:
            raise DovecotFormatError(
                f"Dovecot private key {info.key_id} uses cipher {fields[3][:20]!r}; "
                f"only {KEY_CIPHER} is supported"
            )
        salt = _unhex(fields[4], "salt")
        kdf_hash = fields[5]
        if kdf_hash not in _KDF_HASHES:
            raise DovecotFormatError(f"unsupported key KDF hash {kdf_hash[:20]!r}")
        rounds = _rounds(fields[6])
        locked = _unhex(fields[7], "encrypted private key")
        if info.enctype == KEY_ENCTYPE_PASSWORD:
            if password is None:
                raise DovecotWrongPassword(
                    f"Dovecot private key {info.key_id} is locked with a password; give it"
                )
            secret = password.reveal()
        else:
            secret = _key_secret(decryption_key, info.encryption_key_id or "", fields[8], 2)
        stretched = hashlib.pbkdf2_hmac(kdf_hash, secret, salt, rounds, 48)
        raw = _ctr(stretched[:32], stretched[32:48], locked)
    return _checked(algorithm_oid, raw, info)


def _checked(algorithm_oid: str, raw: bytes, info: KeyStringInfo) -> DovecotPrivateKey:
    compute = key_id if info.version == 2 else old_key_id
    try:
        key = _private_from_raw(algorithm_oid, raw)
        matches = compute(key) == info.key_id
    except ValueError:
        matches = False
    if not matches:
        if info.enctype == KEY_ENCTYPE_PASSWORD:
            raise DovecotWrongPassword(
                f"the password does not unlock Dovecot private key {info.key_id}"
            )
        if info.enctype == KEY_ENCTYPE_KEY:
            raise DecryptionFailed(f"Dovecot private key {info.key_id}")
        raise DovecotFormatError(
            f"Dovecot private key string {info.key_id} holds another key or a broken one"
        )
    return key


def _load_private_v1(
    fields: list[str],
    info: KeyStringInfo,
    password: SecretBytes | None,
    decryption_key: DovecotPrivateKey | None,
) -> DovecotPrivateKey:
    curve = _nidcurve_by_name(fields[1])
    if info.enctype == KEY_ENCTYPE_NONE:
        scalar_hex = fields[3]
        if not scalar_hex or not re.fullmatch(r"[0-9a-fA-F]+", scalar_hex):
            raise DovecotFormatError("the scalar in a `1` private key string is not hex")
        raw = int(scalar_hex, 16).to_bytes((len(scalar_hex) + 1) // 2, "big")
    elif info.enctype == KEY_ENCTYPE_PASSWORD:
        if password is None:
            raise DovecotWrongPassword(
                f"Dovecot v1 private key {info.key_id} is locked with a password; give it"
            )
        # Dovecot hex-decodes the password of v1 keys (a quirk of dcrypt-openssl.c).
        try:
            password_bytes = bytes.fromhex(password.reveal().decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise DovecotWrongPassword(
                f"the password does not unlock Dovecot v1 private key {info.key_id} "
                "(v1 key passwords are hex strings)"
            ) from None
        stretched = hashlib.pbkdf2_hmac(
            "sha256", password_bytes, _unhex(fields[4], "salt"), KEY_V1_PBKDF2_ROUNDS, 32
        )
        raw = _ctr(stretched, bytes(16), _unhex(fields[3], "encrypted private key"))
    else:
        secret = _key_secret(decryption_key, info.encryption_key_id or "", fields[4], 1)
        raw = _ctr(hashlib.sha256(secret).digest(), bytes(16), _unhex(fields[3], "encrypted key"))
    mpi = mpi_encode(int.from_bytes(raw, "big"))
    return _checked(CURVE_OIDS[curve], mpi, info)


def dump_private_key_string(
    key: DovecotPrivateKey,
    *,
    password: SecretBytes | None = None,
    encryption_key: DovecotPublicKey | None = None,
) -> str:
    """The `2:` private key string of `key`, as Dovecot 2.3 writes it (spec §4.4, §4.5).

    With `password`: enctype 2 (user keys). With `encryption_key` (an EC public key,
    normally the user's): enctype 1 (folder keys). With neither: enctype 0, in clear.

    Raises ValueError if both are given; DovecotFormatError if `encryption_key` is RSA,
    which Dovecot 2.3 cannot read back reliably (§4.6).
    """
    return _dump_private_key_string(
        key,
        password=password,
        encryption_key=encryption_key,
        salt=os.urandom(KEY_SALT_SIZE),
        ephemeral_key=None,
    )


def _dump_private_key_string(
    key: DovecotPrivateKey,
    *,
    password: SecretBytes | None,
    encryption_key: DovecotPublicKey | None,
    salt: bytes,
    ephemeral_key: ec.EllipticCurvePrivateKey | None,
) -> str:
    """`dump_private_key_string` with the salt and ephemeral key fixed, for tests."""
    if password is not None and encryption_key is not None:
        raise ValueError("lock a private key with a password or to a key, not both")
    algorithm_oid, raw = _raw_private(key)
    own_id = key_id(key)
    if password is None and encryption_key is None:
        return f"{KEY_VERSION_2}:{algorithm_oid}:{KEY_ENCTYPE_NONE}:{raw.hex()}:{own_id}"
    if password is not None:
        enctype, secret, tail = KEY_ENCTYPE_PASSWORD, password.reveal(), ""
    else:
        if not isinstance(encryption_key, ec.EllipticCurvePublicKey):
            raise DovecotFormatError(
                "Dovecot 2.3 cannot reliably read keys locked to an RSA key; use an EC key"
            )
        ephemeral = ephemeral_key or ec.generate_private_key(encryption_key.curve)
        secret = ephemeral.exchange(ec.ECDH(), encryption_key)
        point = ephemeral.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        enctype, tail = KEY_ENCTYPE_KEY, f":{point.hex()}:{key_id(encryption_key)}"
    stretched = hashlib.pbkdf2_hmac(KEY_KDF_HASH, secret, salt, KEY_PBKDF2_ROUNDS, 48)
    locked = _ctr(stretched[:32], stretched[32:48], raw)
    return (
        f"{KEY_VERSION_2}:{algorithm_oid}:{enctype}:{KEY_CIPHER}:{salt.hex()}:"
        f"{KEY_KDF_HASH}:{KEY_PBKDF2_ROUNDS}:{locked.hex()}{tail}:{own_id}"
    )
