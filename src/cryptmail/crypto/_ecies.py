"""ECIES: wrap a random message key to a user public key, so delivery needs no password.

    Z        = ECDH(ephemeral private, recipient public)
    wrap_key = HKDF-SHA256(ikm=Z, salt=E || P, info=label || context)
    wrapped  = AES-256-GCM(wrap_key, nonce=0^12, aad=context).encrypt(message_key)

E is the ephemeral public encoding, P the recipient's. Each wrap uses a fresh ephemeral
key, so every wrap_key is used exactly once and the fixed nonce is safe. `context` binds
the wrap to the object it protects (the blob id), so a header moved to another blob
fails to unwrap. `label` names the purpose: LABEL_BLOB_KEY_WRAP for blobs,
LABEL_SEALED_BOX for sealed boxes, each with a length-prefixed context
(crypto._context), so a wrap made for one purpose never opens as another. The default,
LABEL_ECIES_WRAP, is the one label of version-1 blobs and boxes and of slot boxes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryptmail.crypto._keypair import (
    PrivateKey,
    PublicKeyInfo,
    ecdh,
    encode_public_key,
    generate_private_key,
    load_public_key,
    public_info,
)
from cryptmail.crypto._labels import (
    LABEL_ECIES_WRAP,
    LABEL_SEALED_BOX,
    MESSAGE_KEY_SIZE,
    SEALED_BOX_VERSION,
)
from cryptmail.errors import DecryptionFailed, MalformedObject

WRAPPED_SIZE = MESSAGE_KEY_SIZE + 16
_ZERO_NONCE = bytes(12)


@dataclass(frozen=True)
class WrappedKey:
    """A message key wrapped to one recipient."""

    ephemeral: bytes
    wrapped: bytes = field(repr=False)


def _wrap_key_for(
    shared: bytes, ephemeral: bytes, recipient: bytes, context: bytes, label: bytes
) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral + recipient,
        info=label + context,
    ).derive(shared)


def wrap_key(
    message_key: bytes,
    recipient: PublicKeyInfo,
    context: bytes,
    *,
    label: bytes = LABEL_ECIES_WRAP,
) -> WrappedKey:
    """Wrap `message_key` (32 bytes) to `recipient`, bound to `label` and `context`."""
    if len(message_key) != MESSAGE_KEY_SIZE:
        raise ValueError("a message key is 32 bytes")
    ephemeral_private = generate_private_key(recipient.curve)
    ephemeral = encode_public_key(ephemeral_private.public_key())
    shared = ecdh(ephemeral_private, recipient.load())
    wrap = _wrap_key_for(shared, ephemeral, recipient.encoded, context, label)
    return WrappedKey(ephemeral, AESGCM(wrap).encrypt(_ZERO_NONCE, message_key, context))


def unwrap_key(
    wrapped: WrappedKey,
    private_key: PrivateKey,
    context: bytes,
    *,
    label: bytes = LABEL_ECIES_WRAP,
) -> bytes:
    """The message key; DecryptionFailed for a wrong key, context or changed bytes."""
    if len(wrapped.wrapped) != WRAPPED_SIZE:
        # Checked before any decryption (partitioning oracles, as age requires).
        raise DecryptionFailed("wrapped message key")
    recipient = public_info(private_key)
    try:
        ephemeral_public = load_public_key(recipient.curve, wrapped.ephemeral)
        shared = ecdh(private_key, ephemeral_public)
    except MalformedObject as exc:
        raise DecryptionFailed("wrapped message key") from exc
    wrap = _wrap_key_for(shared, wrapped.ephemeral, recipient.encoded, context, label)
    try:
        return AESGCM(wrap).decrypt(_ZERO_NONCE, wrapped.wrapped, context)
    except InvalidTag as exc:
        raise DecryptionFailed("wrapped message key") from exc


_BOX_VERSION = bytes([SEALED_BOX_VERSION])


def seal_box(plaintext: bytes, recipient: PublicKeyInfo, context: bytes) -> bytes:
    """Seal a short value to a public key (security-event details written at login).

    box = 0x03 | eph_len u8 | ephemeral | wrapped (48) | AES-256-GCM(message_key, 0^12,
          aad=LABEL_SEALED_BOX || context).encrypt(plaintext); the message key is fresh
          per box and wrapped with label LABEL_SEALED_BOX. Pass a length-prefixed
          `context` (crypto._context).
    """
    message_key = os.urandom(MESSAGE_KEY_SIZE)
    wrapped = wrap_key(message_key, recipient, context, label=LABEL_SEALED_BOX)
    body = AESGCM(message_key).encrypt(_ZERO_NONCE, plaintext, LABEL_SEALED_BOX + context)
    return (
        _BOX_VERSION + bytes([len(wrapped.ephemeral)]) + wrapped.ephemeral + wrapped.wrapped + body
    )


def open_box(
    box: bytes, private_key: PrivateKey, context: bytes, *, legacy: bytes | None = None
) -> bytes:
    """The plaintext of `seal_box`; DecryptionFailed if it is not ours or was changed.

    A version-1 box (no version byte: it starts with eph_len, which is 32 or more;
    wrapped with LABEL_ECIES_WRAP, body aad = context) opens with `legacy` as its
    context when given, else with `context`; it is never written any more."""
    if not box:
        raise DecryptionFailed("sealed box")
    if box[:1] == _BOX_VERSION:
        label, aad, box = LABEL_SEALED_BOX, LABEL_SEALED_BOX + context, box[1:]
    else:
        context = context if legacy is None else legacy
        label, aad = LABEL_ECIES_WRAP, context
    if not box:
        raise DecryptionFailed("sealed box")
    eph_len = box[0]
    ephemeral = box[1 : 1 + eph_len]
    wrapped = box[1 + eph_len : 1 + eph_len + WRAPPED_SIZE]
    body = box[1 + eph_len + WRAPPED_SIZE :]
    message_key = unwrap_key(WrappedKey(ephemeral, wrapped), private_key, context, label=label)
    try:
        return AESGCM(message_key).decrypt(_ZERO_NONCE, body, aad)
    except InvalidTag as exc:
        raise DecryptionFailed("sealed box") from exc
