"""Argon2id (RFC 9106) for key slots, with parameters stored beside each slot."""

from __future__ import annotations

from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw

from cryptmail.errors import KdfParametersRefused


@dataclass(frozen=True)
class Argon2Params:
    """Argon2id cost parameters of one slot."""

    memory_kib: int
    time_cost: int
    parallelism: int

    def check_ceiling(self, max_memory_kib: int, max_time_cost: int) -> None:
        """Refuse, before any work, parameters above the configured ceiling."""
        if (
            self.memory_kib > max_memory_kib
            or self.time_cost > max_time_cost
            or not 1 <= self.parallelism <= 64
            or self.memory_kib < 8 * self.parallelism
            or self.time_cost < 1
        ):
            raise KdfParametersRefused(
                f"key slot asks for Argon2id m={self.memory_kib} KiB t={self.time_cost} "
                f"p={self.parallelism}, outside the allowed range (ceiling "
                f"m={max_memory_kib} KiB t={max_time_cost}); raise crypto.argon2.max_* "
                "only if you created such slots on purpose"
            )


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
