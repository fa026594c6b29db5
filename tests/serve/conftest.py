"""Fixtures for the running server's tests: Argon2 at the smallest cost the config accepts."""

from __future__ import annotations

from cryptmail.config import Argon2Config, CryptoConfig

CRYPTO = CryptoConfig(argon2=Argon2Config(memory_kib=19456, time_cost=2))
