"""URLAUTH grants (RFC 4467 with our mechanism INTERNAL): sealed under the URL's token.

The token is random (URLAUTH_TOKEN_SIZE bytes, sent as hex in the URL) and never
stored. Its row is found by ``HKDF(token, LABEL_URLAUTH_LOOKUP)``; the grant (what a
URLFETCH needs to read the part) is AES-256-GCM under ``HKDF(token, LABEL_URLAUTH_WRAP)``
with the URL's canonical form as associated data, so a URL changed in any component
(access identifier, mailbox, UID, section, expiry) no longer opens its grant. A token
carries 256 bits, so a fast KDF is enough: nobody can guess one from its lookup id.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryptmail.crypto._labels import (
    LABEL_URLAUTH_LOOKUP,
    LABEL_URLAUTH_WRAP,
    URLAUTH_TOKEN_SIZE,
    URLAUTH_VERSION,
)
from cryptmail.errors import DecryptionFailed

_NONCE_SIZE = 12
_MAX_SEALED = 64 * 1024


def _derive(token: bytes, label: bytes) -> bytes:
    if len(token) != URLAUTH_TOKEN_SIZE:
        raise DecryptionFailed("URLAUTH grant")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(token)


def new_url_token() -> bytes:
    """A fresh random token for one URL."""
    return secrets.token_bytes(URLAUTH_TOKEN_SIZE)


def url_token_lookup(token: bytes) -> bytes:
    """The 32-byte id the token's row is stored under; DecryptionFailed for a wrong size."""
    return _derive(token, LABEL_URLAUTH_LOOKUP)


def _aad(url: bytes) -> bytes:
    return LABEL_URLAUTH_WRAP + bytes([URLAUTH_VERSION]) + url


def seal_url_grant(token: bytes, url: bytes, grant: bytes) -> bytes:
    """`grant` sealed under the token for the canonical `url`."""
    nonce = secrets.token_bytes(_NONCE_SIZE)
    aead = AESGCM(_derive(token, LABEL_URLAUTH_WRAP))
    return bytes([URLAUTH_VERSION]) + nonce + aead.encrypt(nonce, grant, _aad(url))


def open_url_grant(token: bytes, url: bytes, sealed: bytes) -> bytes:
    """The grant sealed by :func:`seal_url_grant`; DecryptionFailed (one opaque error)
    for a wrong token, another URL, an unknown version or a changed row."""
    if (
        len(sealed) < 1 + _NONCE_SIZE + 16
        or len(sealed) > _MAX_SEALED
        or sealed[0] != URLAUTH_VERSION
    ):
        raise DecryptionFailed("URLAUTH grant")
    nonce = sealed[1 : 1 + _NONCE_SIZE]
    aead = AESGCM(_derive(token, LABEL_URLAUTH_WRAP))
    try:
        return aead.decrypt(nonce, sealed[1 + _NONCE_SIZE :], _aad(url))
    except InvalidTag:
        raise DecryptionFailed("URLAUTH grant") from None
