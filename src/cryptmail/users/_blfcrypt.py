"""bcrypt strings (`$2y$`, `$2b$`, `$2a$`) for Dovecot's BLF-CRYPT, through the bcrypt package.

bcrypt reads at most 72 bytes of a password; Dovecot's crypt_blowfish silently ignores the
rest, while the bcrypt package (5.x) refuses longer input. Verification therefore cuts
the password at 72 bytes, so hashes that Dovecot made for long passwords still match;
writing refuses passwords that would be cut (see `hash_blf_crypt`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import bcrypt

from cryptmail.errors import MalformedPasswordHash, PasswordRejected, UnsupportedPasswordScheme

MAX_PASSWORD_BYTES: Final = 72
COST_MIN: Final = 4
COST_MAX: Final = 31
COST_CEILING: Final = 16
"""Highest cost we verify: 2**16 rounds take seconds already; more is a denial of service."""

_PARSE: Final = re.compile(r"\$2(?P<minor>[abxy])\$(?P<cost>[0-9]{2})\$[./A-Za-z0-9]{53}")


@dataclass(frozen=True)
class BlfCryptHash:
    """A parsed bcrypt string; `encoded` is the whole `$2y$...` text."""

    minor: str
    cost: int
    encoded: str


def is_blf_crypt(encoded: str) -> bool:
    """Whether the string claims to be a bcrypt hash (starts with `$2`)."""
    return encoded.startswith("$2")


def parse_blf_crypt(encoded: str) -> BlfCryptHash:
    """Check a bcrypt string's shape and cost before any work.

    Raises:
        UnsupportedPasswordScheme: the `$2x$` variant (crypt_blowfish's bug-compatible mode),
            which the bcrypt package does not reproduce.
        MalformedPasswordHash: not a well-formed bcrypt string, or its cost is above the
            ceiling.
    """
    match = _PARSE.fullmatch(encoded)
    if match is None:
        raise MalformedPasswordHash(
            "a stored BLF-CRYPT password hash is malformed; set a new password for the user"
        )
    if match["minor"] == "x":
        raise UnsupportedPasswordScheme(
            "BLF-CRYPT variant $2x$ (crypt_blowfish's emulation of its old 8-bit bug) is not "
            "supported; set a new password for the user"
        )
    cost = int(match["cost"])
    if not COST_MIN <= cost <= COST_MAX:
        raise MalformedPasswordHash(
            f"a stored BLF-CRYPT password hash has cost {cost}, outside {COST_MIN}..{COST_MAX}; "
            "set a new password for the user"
        )
    if cost > COST_CEILING:
        raise MalformedPasswordHash(
            f"a stored BLF-CRYPT password hash has cost {cost}, above the ceiling of "
            f"{COST_CEILING}; set a new password for the user"
        )
    return BlfCryptHash(minor=match["minor"], cost=cost, encoded=encoded)


def verify_blf_crypt(parsed: BlfCryptHash, password: bytes) -> bool:
    """Whether `password` matches; bcrypt compares in constant time."""
    return bcrypt.checkpw(password[:MAX_PASSWORD_BYTES], parsed.encoded.encode("ascii"))


def hash_blf_crypt(password: bytes, cost: int) -> str:
    """A new `$2y$` string, the prefix Dovecot and crypt_blowfish write.

    `$2y$` and `$2b$` are the same algorithm; `$2y$` is what older crypt_blowfish builds
    (and so older Dovecot) accept.

    Raises:
        PasswordRejected: the password is longer than 72 bytes, which bcrypt would ignore.
        ValueError: the cost is outside 4..31.
    """
    if len(password) > MAX_PASSWORD_BYTES:
        raise PasswordRejected(
            f"BLF-CRYPT uses only the first {MAX_PASSWORD_BYTES} bytes of a password, and this "
            "one is longer; use the ARGON2ID scheme, or a shorter password"
        )
    if not COST_MIN <= cost <= COST_MAX:
        raise ValueError(f"bcrypt cost must be in {COST_MIN}..{COST_MAX}, not {cost}")
    encoded = bcrypt.hashpw(password, bcrypt.gensalt(rounds=cost)).decode("ascii")
    return "$2y$" + encoded.removeprefix("$2b$")
