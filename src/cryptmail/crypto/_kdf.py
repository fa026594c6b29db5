"""Argon2id (RFC 9106) for key slots, with parameters stored beside each slot.

The computation goes through `cryptmail.hashing`: in `serve` it runs in a hashing process."""

from __future__ import annotations

from argon2.low_level import Type

from cryptmail.config import Argon2Params
from cryptmail.hashing import hash_secret_raw


def derive_key(secret: bytes, salt: bytes, params: Argon2Params) -> bytes:
    """A 32-byte key from `secret` (a password's bytes). Slow on purpose: offload it."""
    return hash_secret_raw(
        secret=secret,
        salt=salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=32,
        type=Type.ID,
    )
