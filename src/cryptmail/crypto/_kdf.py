"""Argon2id (RFC 9106) for key slots, with parameters stored beside each slot."""

from __future__ import annotations

from argon2.low_level import Type, hash_secret_raw

from cryptmail.config import Argon2Params


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
