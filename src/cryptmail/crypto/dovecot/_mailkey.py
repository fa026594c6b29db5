"""The per-mail key of a Dovecot mail file: unwrap it for a recipient, wrap it for one.

EC recipients: ECDH with the ephemeral point, PBKDF2 of the shared x coordinate with the
stored point as salt, AES-256-CBC. RSA recipients: OAEP with SHA-1. Then a 2049-step hash
chain over the key material tells a right key from a wrong one (spec §3.3). v1 files
wrap a 32-byte seed with AES-256-CTR under SHA-256 of the shared secret (§3.8).
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import padding as symmetric_padding
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import (
    Cipher,
    algorithms,
    modes,
)

from cryptmail.crypto.dovecot._constants import (
    DEFAULT_HASH,
    FLAG_AEAD,
    FLAG_HMAC,
    KEY_DATA_EXTRA_SIZE,
    KEY_DATA_HASH_ROUNDS,
    KEY_TYPE_EC,
    KEY_TYPE_RSA,
    STREAM_CIPHERS,
    STREAM_PBKDF2_ROUNDS,
    STREAM_WRAP_IV_SIZE,
    STREAM_WRAP_KEY_SIZE,
)
from cryptmail.crypto.dovecot._header import DovecotHeader, DovecotRecipient
from cryptmail.crypto.dovecot._keyring import DovecotKeyring
from cryptmail.crypto.dovecot._keys import (
    RSA_OAEP,
    DovecotPrivateKey,
    DovecotPublicKey,
    ecdh_secret,
)
from cryptmail.errors import DecryptionFailed, DovecotKeyNotFound

_WHAT = "Dovecot mail file"


def key_data_hash(digest: str, key_material: bytes) -> bytes:
    """h = D(K), then 2048 times h = D(h || u32(i)): the "right key" check of §3.3."""
    value = hashlib.new(digest, key_material).digest()
    for counter in range(1, KEY_DATA_HASH_ROUNDS + 1):
        value = hashlib.new(digest, value + counter.to_bytes(4, "big")).digest()
    return value


def key_material_size(header: DovecotHeader) -> int:
    """Length of K: cipher key, IV, and 16 bytes of AAD or HMAC key with integrity."""
    _, key_size, iv_size, _ = STREAM_CIPHERS[header.cipher]
    extra = KEY_DATA_EXTRA_SIZE if header.flags & (FLAG_AEAD | FLAG_HMAC) else 0
    return key_size + iv_size + extra


def find_recipient(
    header: DovecotHeader, keyring: DovecotKeyring
) -> tuple[DovecotRecipient, DovecotPrivateKey]:
    """The first recipient the keyring has a key for; DovecotKeyNotFound if none."""
    for recipient in header.recipients:
        private_key = keyring.find(recipient.key_id)
        if private_key is not None:
            return recipient, private_key
    wanted = ", ".join(recipient.key_id for recipient in header.recipients)
    raise DovecotKeyNotFound(
        f"no private key for {_WHAT} recipient {wanted}; give the attributes file and "
        "password of the user who owns the mailbox, or the matching global key"
    )


def unwrap_v2(header: DovecotHeader, keyring: DovecotKeyring) -> bytes:
    """The per-mail key K of a v2 file, checked by its hash chain.

    Raises DovecotKeyNotFound (no key for any recipient) or DecryptionFailed.
    """
    recipient, private_key = find_recipient(header, keyring)
    expected_size = key_material_size(header)
    if recipient.key_type == KEY_TYPE_EC:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise DecryptionFailed(_WHAT)
        padded_size = (expected_size // 16 + 1) * 16
        if len(recipient.wrapped_key) != padded_size:
            raise DecryptionFailed(_WHAT)
        secret = ecdh_secret(private_key, recipient.ephemeral_key)
        stretched = hashlib.pbkdf2_hmac(
            header.digest,
            secret,
            recipient.ephemeral_key,
            header.rounds,
            STREAM_WRAP_KEY_SIZE + STREAM_WRAP_IV_SIZE,
        )
        unwrap = Cipher(
            algorithms.AES(stretched[:STREAM_WRAP_KEY_SIZE]),
            modes.CBC(stretched[STREAM_WRAP_KEY_SIZE:]),
        ).decryptor()
        unpadder = symmetric_padding.PKCS7(128).unpadder()
        try:
            padded = unwrap.update(recipient.wrapped_key) + unwrap.finalize()
            key_material = unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise DecryptionFailed(_WHAT) from None
    else:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise DecryptionFailed(_WHAT)
        if len(recipient.wrapped_key) != private_key.key_size // 8:
            raise DecryptionFailed(_WHAT)
        try:
            key_material = private_key.decrypt(recipient.wrapped_key, RSA_OAEP)
        except ValueError:
            raise DecryptionFailed(_WHAT) from None
    if len(key_material) != expected_size or not hmac.compare_digest(
        key_data_hash(header.digest, key_material), header.key_hash
    ):
        raise DecryptionFailed(_WHAT)
    return key_material


def unwrap_v1(header: DovecotHeader, keyring: DovecotKeyring) -> bytes:
    """The 32-byte seed of a v1 file, checked by its SHA-256.

    Raises DovecotKeyNotFound (no key for the old-style id) or DecryptionFailed.
    """
    recipient, private_key = find_recipient(header, keyring)
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise DecryptionFailed(_WHAT)
    wrap_key = hashlib.sha256(ecdh_secret(private_key, recipient.ephemeral_key)).digest()
    unwrap = Cipher(algorithms.AES(wrap_key), modes.CTR(bytes(16))).decryptor()
    seed = unwrap.update(recipient.wrapped_key) + unwrap.finalize()
    if not hmac.compare_digest(hashlib.sha256(seed).digest(), header.key_hash):
        raise DecryptionFailed(_WHAT)
    return seed


def wrap_key_material(
    recipient: DovecotPublicKey,
    key_material: bytes,
    ephemeral_key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[int, bytes, bytes]:
    """Wrap the per-mail key for `recipient` as Dovecot 2.3 does (SHA-256, 2048 rounds).

    Returns (key type, ephemeral point or b"" for RSA, wrapped key). `ephemeral_key` is a
    seam for tests; normally a fresh one is made on the recipient's curve.
    """
    if not isinstance(recipient, ec.EllipticCurvePublicKey):
        return KEY_TYPE_RSA, b"", recipient.encrypt(key_material, RSA_OAEP)
    ephemeral = ephemeral_key or ec.generate_private_key(recipient.curve)
    point = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    stretched = hashlib.pbkdf2_hmac(
        DEFAULT_HASH,
        ephemeral.exchange(ec.ECDH(), recipient),
        point,
        STREAM_PBKDF2_ROUNDS,
        STREAM_WRAP_KEY_SIZE + STREAM_WRAP_IV_SIZE,
    )
    padder = symmetric_padding.PKCS7(128).padder()
    wrap = Cipher(
        algorithms.AES(stretched[:STREAM_WRAP_KEY_SIZE]),
        modes.CBC(stretched[STREAM_WRAP_KEY_SIZE:]),
    ).encryptor()
    padded = padder.update(key_material) + padder.finalize()
    return KEY_TYPE_EC, point, wrap.update(padded) + wrap.finalize()
