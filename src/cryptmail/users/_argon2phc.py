"""Argon2 PHC strings (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), as Dovecot writes them.

Dovecot's ARGON2I / ARGON2ID schemes go through libsodium, whose strings are the
reference PHC format that argon2-cffi reads and writes too. The string is parsed strictly
here and its cost checked against a ceiling before argon2-cffi does any work, because
argon2-cffi's own parser is lenient and a stored string may ask for any amount of memory.
"""

from __future__ import annotations

import binascii
import os
import re
from dataclasses import dataclass
from typing import Final, Literal

from argon2 import Type, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from cryptmail import hashing
from cryptmail.config import Argon2Params
from cryptmail.errors import MalformedPasswordHash

Argon2Variant = Literal["argon2i", "argon2id"]

MEMORY_CEILING_KIB: Final = 1 << 20
"""1 GiB; `doveadm pw -s ARGON2ID -r 4` and above write exactly this much."""
TIME_CEILING: Final = 32
PARALLELISM_CEILING: Final = 16
HASH_LEN: Final = profiles.RFC_9106_LOW_MEMORY.hash_len
"""Bytes of output of a new hash: 32, argon2-cffi's default and what Dovecot writes."""
SALT_LEN: Final = profiles.RFC_9106_LOW_MEMORY.salt_len
"""Bytes of random salt of a new hash (16)."""
DEFAULT_ARGON2: Final = Argon2Params(
    memory_kib=profiles.RFC_9106_LOW_MEMORY.memory_cost,
    time_cost=profiles.RFC_9106_LOW_MEMORY.time_cost,
    parallelism=profiles.RFC_9106_LOW_MEMORY.parallelism,
)
"""Cost of new hashes unless the caller names its own: RFC 9106's low-memory choice,
argon2-cffi's default. Dovecot's own `doveadm pw -s ARGON2ID` writes m=65536, t=3, p=1;
it verifies hashes with any p."""

_TYPES: Final[dict[Argon2Variant, Type]] = {"argon2i": Type.I, "argon2id": Type.ID}
_NUMBER: Final = r"[1-9][0-9]{0,9}"
_B64: Final = r"[A-Za-z0-9+/]+"
_PARSE: Final = re.compile(
    rf"\$(?P<variant>argon2id|argon2i)"
    rf"(?:\$v=(?P<version>16|19))?"
    rf"\$m=(?P<m>{_NUMBER}),t=(?P<t>{_NUMBER}),p=(?P<p>{_NUMBER})"
    rf"\$(?P<salt>{_B64})\$(?P<hash>{_B64})"
)


@dataclass(frozen=True)
class Argon2Hash:
    """A parsed PHC string; `encoded` is the whole text."""

    variant: Argon2Variant
    version: int
    memory_cost: int
    time_cost: int
    parallelism: int
    salt_len: int
    hash_len: int
    encoded: str

    @property
    def scheme(self) -> str:
        return self.variant.upper()

    def matches(self, params: Argon2Params) -> bool:
        """Whether `hash_argon2` would write this hash's form with these parameters:
        the same cost, version 19, and our salt and output lengths."""
        return (
            self.version == 19
            and self.memory_cost == params.memory_kib
            and self.time_cost == params.time_cost
            and self.parallelism == params.parallelism
            and self.salt_len == SALT_LEN
            and self.hash_len == HASH_LEN
        )


def is_argon2(encoded: str) -> bool:
    return encoded.startswith("$argon2")


def parse_argon2(encoded: str) -> Argon2Hash:
    """Parse a PHC string strictly and check its cost against the ceilings.

    Raises:
        MalformedPasswordHash: not a canonical argon2i/argon2id PHC string (argon2d is
            refused, as libsodium and so Dovecot refuse it), or its cost is above a ceiling.
    """
    match = _PARSE.fullmatch(encoded)
    if match is None:
        raise MalformedPasswordHash(
            "a stored ARGON2 password hash is malformed (only canonical $argon2i$ and "
            "$argon2id$ strings are read); set a new password for the user"
        )
    salt = _decode_b64(match["salt"])
    digest = _decode_b64(match["hash"])
    memory, time, lanes = int(match["m"]), int(match["t"]), int(match["p"])
    if memory > MEMORY_CEILING_KIB or time > TIME_CEILING or lanes > PARALLELISM_CEILING:
        raise MalformedPasswordHash(
            f"a stored ARGON2 password hash asks for m={memory} KiB, t={time}, p={lanes}, "
            f"above the ceiling (m<={MEMORY_CEILING_KIB}, t<={TIME_CEILING}, "
            f"p<={PARALLELISM_CEILING}); set a new password for the user"
        )
    variant: Argon2Variant = "argon2id" if match["variant"] == "argon2id" else "argon2i"
    return Argon2Hash(
        variant=variant,
        version=int(match["version"] or 16),
        memory_cost=memory,
        time_cost=time,
        parallelism=lanes,
        salt_len=len(salt),
        hash_len=len(digest),
        encoded=encoded,
    )


def verify_argon2(parsed: Argon2Hash, password: bytes) -> bool:
    """Whether `password` matches; argon2-cffi compares in constant time.

    Raises:
        MalformedPasswordHash: the Argon2 library refused the string's parameters.
    """
    try:
        hashing.verify_secret(parsed.encoded.encode("ascii"), password, _TYPES[parsed.variant])
    except VerifyMismatchError:
        return False
    except (VerificationError, InvalidHashError) as exc:
        raise MalformedPasswordHash(
            "a stored ARGON2 password hash has parameters the Argon2 library refuses; "
            "set a new password for the user"
        ) from exc
    return True


def hash_argon2(password: bytes, variant: Argon2Variant, params: Argon2Params) -> str:
    """A new PHC string with a random salt.

    Raises:
        ValueError: a cost is outside what we would read back (the ceilings above).
    """
    return _hash_argon2_with_salt(password, variant, params, os.urandom(SALT_LEN))


def _check_cost(params: Argon2Params) -> None:
    if not 1 <= params.parallelism <= PARALLELISM_CEILING:
        raise ValueError(f"Argon2 parallelism must be in 1..{PARALLELISM_CEILING}")
    if not 1 <= params.time_cost <= TIME_CEILING:
        raise ValueError(f"Argon2 time_cost must be in 1..{TIME_CEILING}")
    if not 8 * params.parallelism <= params.memory_kib <= MEMORY_CEILING_KIB:
        raise ValueError(f"Argon2 memory_kib must be in 8*parallelism..{MEMORY_CEILING_KIB} KiB")


def _hash_argon2_with_salt(
    password: bytes, variant: Argon2Variant, params: Argon2Params, salt: bytes
) -> str:
    """Test seam: a PHC string with a chosen salt."""
    _check_cost(params)
    encoded = hashing.hash_secret(
        password,
        salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=HASH_LEN,
        type=_TYPES[variant],
        version=19,
    )
    return encoded.decode("ascii")


def _decode_b64(text: str) -> bytes:
    """Unpadded standard base64, canonical only (no stray bits in the last character)."""
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error as exc:
        raise MalformedPasswordHash(
            "a stored ARGON2 password hash has bad base64; set a new password for the user"
        ) from exc
    if binascii.b2a_base64(raw, newline=False).decode("ascii").rstrip("=") != text:
        raise MalformedPasswordHash(
            "a stored ARGON2 password hash has non-canonical base64; "
            "set a new password for the user"
        )
    return raw
