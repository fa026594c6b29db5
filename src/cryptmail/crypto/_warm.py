"""Each primitive run once, so that a process forked afterwards finds it set up.

The first use of an algorithm in a process sets it up in OpenSSL (providers, method
stores, caches: allocations and writes over the library's heap). `cryptmail serve`
forks its LMTP workers from a process that has imported everything but run nothing, so
every process did that setup on its own, and it wrote to about 3 MiB of pages it shared
with the others: each of them then held its own copy (measured, a server key loaded in a
forked child: 3.3 MiB of pages written, 0.6 MiB after `warm_up` in the parent).
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryptmail.crypto._keypair import (
    curve_names,
    ecdh,
    generate_private_key,
    load_private_key,
    serialize_private_key,
)

_KEY = bytes(32)
_NONCE = bytes(12)


def warm_up() -> None:
    """Run HKDF, AES-GCM, HMAC and SHA-256, and key generation, serialisation and ECDH
    on every curve, once each, on constants and throwaway keys (nothing kept)."""
    key = HKDF(hashes.SHA256(), 32, None, b"cryptmail warm-up").derive(_KEY)
    aead = AESGCM(key)
    aead.decrypt(_NONCE, aead.encrypt(_NONCE, b"warm-up", b""), b"")
    hmac.new(key, hashlib.sha256(b"warm-up").digest(), hashlib.sha256).digest()
    for curve in curve_names():
        private = generate_private_key(curve)
        ecdh(load_private_key(serialize_private_key(private)), private.public_key())
