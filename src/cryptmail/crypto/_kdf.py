"""Argon2id (RFC 9106) for key slots, with parameters stored beside each slot.

The computation goes through `cryptmail.hashing`: in `serve` it runs in a hashing process."""

from __future__ import annotations

from cryptmail.config import Argon2Params


def derive_key(secret: bytes, salt: bytes, params: Argon2Params) -> bytes:
    """A 32-byte key from `secret` (a password's bytes). Slow on purpose: offload it."""
    # Imported here, not above: an LMTP worker imports the key slot code but never
    # derives a key, and argon2-cffi with its bindings is 0.7 MiB of its memory.
    from argon2.low_level import Type

    from cryptmail.hashing import hash_secret_raw

    return hash_secret_raw(
        secret=secret,
        salt=salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=32,
        type=Type.ID,
    )
