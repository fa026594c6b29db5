"""cryptmail.hashing: where Argon2 runs, in this process or in hashing processes.

The three argon2-cffi calls the server makes (`hash_secret_raw` for key slots,
`hash_secret` and `verify_secret` for `{ARGON2ID}` password hashes), with the same
arguments, results and exceptions. By default they run here (the CLI, the tests);
`serve` calls `use_hashing_processes` so that they run in small child processes
(`_processes`) and the server's own memory does not grow by Argon2's 46 MiB per login.
A package at the bottom, like `metrics`: `crypto` and `users` both call it.
"""

from __future__ import annotations

import struct
from typing import Literal

from argon2 import Type, low_level
from argon2.exceptions import (
    HashingError,
    InvalidHashError,
    VerificationError,
    VerifyMismatchError,
)

from cryptmail.hashing import _child
from cryptmail.hashing._processes import HashingProcesses

__all__ = [
    "HashingProcesses",
    "hash_secret",
    "hash_secret_raw",
    "hashing_processes",
    "use_hashing_processes",
    "use_this_process",
    "verify_secret",
]

_pool: HashingProcesses | None = None


def use_hashing_processes(idle_s: float) -> HashingProcesses:
    """From now on Argon2 runs in hashing processes that exit after `idle_s` idle."""
    global _pool
    use_this_process()
    _pool = HashingProcesses(idle_s)
    return _pool


def use_this_process() -> None:
    """From now on Argon2 runs in the calling threads again (and the children exit)."""
    global _pool
    if _pool is not None:
        _pool.close()
    _pool = None


def hashing_processes() -> HashingProcesses | None:
    """The pool in use, or None when Argon2 runs in this process."""
    return _pool


def _blob(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _numbers(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def _raise_for(status: int, payload: bytes) -> None:
    message = payload.decode("utf-8", "replace")
    if status == _child.MISMATCH:
        raise VerifyMismatchError("the password does not match the hash")
    if status == _child.VERIFICATION_ERROR:
        raise VerificationError(message)
    if status == _child.INVALID_HASH:
        raise InvalidHashError(message)
    if status == _child.HASHING_ERROR:
        raise HashingError(message)
    raise ValueError(message)


def _hash(
    op: int,
    secret: bytes,
    salt: bytes,
    costs: tuple[int, int, int, int],
    type: Type,
    version: int,
) -> bytes:
    assert _pool is not None  # noqa: S101 - callers check
    request = bytes([op]) + _blob(secret) + _blob(salt) + _numbers(*costs, type.value, version)
    status, payload = _pool.call(request)
    if status != _child.OK:
        _raise_for(status, payload)
    return payload


def hash_secret_raw(
    secret: bytes,
    salt: bytes,
    time_cost: int,
    memory_cost: int,
    parallelism: int,
    hash_len: int,
    type: Type,
    version: int = low_level.ARGON2_VERSION,
) -> bytes:
    """argon2-cffi's `low_level.hash_secret_raw`, wherever Argon2 runs now."""
    if _pool is None:
        return low_level.hash_secret_raw(
            secret, salt, time_cost, memory_cost, parallelism, hash_len, type, version
        )
    costs = (time_cost, memory_cost, parallelism, hash_len)
    return _hash(_child.OP_RAW, secret, salt, costs, type, version)


def hash_secret(
    secret: bytes,
    salt: bytes,
    time_cost: int,
    memory_cost: int,
    parallelism: int,
    hash_len: int,
    type: Type,
    version: int = low_level.ARGON2_VERSION,
) -> bytes:
    """argon2-cffi's `low_level.hash_secret` (a PHC string), wherever Argon2 runs now."""
    if _pool is None:
        return low_level.hash_secret(
            secret, salt, time_cost, memory_cost, parallelism, hash_len, type, version
        )
    costs = (time_cost, memory_cost, parallelism, hash_len)
    return _hash(_child.OP_ENCODED, secret, salt, costs, type, version)


def verify_secret(hash: bytes, secret: bytes, type: Type) -> Literal[True]:
    """argon2-cffi's `low_level.verify_secret`, wherever Argon2 runs now.

    Raises:
        VerifyMismatchError, VerificationError, InvalidHashError: as argon2-cffi does.
        KdfUnavailable: a hashing process died during the call.
    """
    if _pool is None:
        return low_level.verify_secret(hash, secret, type)
    request = bytes([_child.OP_VERIFY]) + _blob(hash) + _blob(secret) + _numbers(type.value)
    status, payload = _pool.call(request)
    if status != _child.OK:
        _raise_for(status, payload)
    return True
