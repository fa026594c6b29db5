"""SHA-crypt (`$5$` SHA256-CRYPT, `$6$` SHA512-CRYPT), as Ulrich Drepper specified it.

The algorithm is the one glibc and libxcrypt implement ("Unix crypt using SHA-256 and
SHA-512", Drepper, 2007-2008), written over hashlib: no maintained PyPI package offers it
without pulling in a whole hashing framework. It is checked against the spec's published
vectors, against Dovecot's `doveadm pw` and against libxcrypt.

Parsing follows libxcrypt rather than the spec where they differ: a `rounds=` value
outside 1000..999,999,999 is refused (the spec would clamp it, libxcrypt, and so Dovecot
on Debian, refuses it), a salt longer than 16 characters is refused (no implementation
writes one), and the checksum must have exactly the right length and alphabet. Above
ROUNDS_CEILING rounds a hash is refused before any work.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final, Literal

from cryptmail.errors import MalformedPasswordHash

ShaCryptId = Literal["5", "6"]

ROUNDS_DEFAULT: Final = 5000
"""Rounds used when the hash has no `rounds=` field."""
ROUNDS_MIN: Final = 1000
ROUNDS_MAX: Final = 999_999_999
ROUNDS_CEILING: Final = 1_000_000
"""Most rounds we verify: a second or two of pure Python (SHA512-CRYPT is the slower);
more is a denial of service."""
SALT_MAX: Final = 16

_ALPHABET: Final = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SCHEME_NAMES: Final[dict[ShaCryptId, str]] = {"5": "SHA256-CRYPT", "6": "SHA512-CRYPT"}
_CHECKSUM_LENGTHS: Final[dict[ShaCryptId, int]] = {"5": 43, "6": 86}

# Byte order of the final encoding: triples of digest indices, each emitted as four
# characters, least significant six bits first (the spec's `b64_from_24bit`).
_SHA256_ORDER: Final = (
    (0, 10, 20),
    (21, 1, 11),
    (12, 22, 2),
    (3, 13, 23),
    (24, 4, 14),
    (15, 25, 5),
    (6, 16, 26),
    (27, 7, 17),
    (18, 28, 8),
    (9, 19, 29),
)
_SHA512_ORDER: Final = (
    (0, 21, 42),
    (22, 43, 1),
    (44, 2, 23),
    (3, 24, 45),
    (25, 46, 4),
    (47, 5, 26),
    (6, 27, 48),
    (28, 49, 7),
    (50, 8, 29),
    (9, 30, 51),
    (31, 52, 10),
    (53, 11, 32),
    (12, 33, 54),
    (34, 55, 13),
    (56, 14, 35),
    (15, 36, 57),
    (37, 58, 16),
    (59, 17, 38),
    (18, 39, 60),
    (40, 61, 19),
    (62, 20, 41),
)

_PARSE: Final = re.compile(
    r"\$(?P<ident>[56])\$"
    r"(?:rounds=(?P<rounds>[1-9][0-9]{0,9})\$)?"
    r"(?P<salt>[!-#%-9;-~]*)\$"
    r"(?P<checksum>[./0-9A-Za-z]*)"
)


@dataclass(frozen=True)
class ShaCryptHash:
    """A parsed `$5$` / `$6$` string."""

    ident: ShaCryptId
    rounds: int
    rounds_explicit: bool
    salt: str
    checksum: str

    @property
    def scheme(self) -> str:
        return _SCHEME_NAMES[self.ident]


def parse_sha_crypt(encoded: str) -> ShaCryptHash:
    """Split a SHA-crypt string into its fields.

    Raises:
        MalformedPasswordHash: the string is not a well-formed `$5$` or `$6$` hash.
    """
    match = _PARSE.fullmatch(encoded)
    if match is None:
        raise MalformedPasswordHash(
            "a stored SHA-crypt password hash is malformed; set a new password for the user"
        )
    ident: ShaCryptId = "5" if match["ident"] == "5" else "6"
    name = _SCHEME_NAMES[ident]
    rounds = ROUNDS_DEFAULT if match["rounds"] is None else int(match["rounds"])
    if not ROUNDS_MIN <= rounds <= ROUNDS_MAX:
        raise MalformedPasswordHash(
            f"a stored {name} password hash has rounds={rounds}, outside "
            f"{ROUNDS_MIN}..{ROUNDS_MAX}; set a new password for the user"
        )
    if rounds > ROUNDS_CEILING:
        raise MalformedPasswordHash(
            f"a stored {name} password hash has rounds={rounds}, above the ceiling of "
            f"{ROUNDS_CEILING}; set a new password for the user"
        )
    if len(match["salt"]) > SALT_MAX:
        raise MalformedPasswordHash(
            f"a stored {name} password hash has a salt longer than {SALT_MAX} characters; "
            "set a new password for the user"
        )
    if len(match["checksum"]) != _CHECKSUM_LENGTHS[ident]:
        raise MalformedPasswordHash(
            f"a stored {name} password hash has a checksum of the wrong length; "
            "set a new password for the user"
        )
    return ShaCryptHash(
        ident=ident,
        rounds=rounds,
        rounds_explicit=match["rounds"] is not None,
        salt=match["salt"],
        checksum=match["checksum"],
    )


def verify_sha_crypt(parsed: ShaCryptHash, password: bytes) -> bool:
    """Whether `password` matches a parsed hash; the checksum is compared in constant time."""
    checksum = _sha_crypt_checksum(
        password, parsed.salt.encode("ascii"), parsed.rounds, parsed.ident
    )
    return hmac.compare_digest(checksum.encode("ascii"), parsed.checksum.encode("ascii"))


def hash_sha_crypt(password: bytes, ident: ShaCryptId, rounds: int) -> str:
    """A new SHA-crypt string with a random 16-character salt.

    `rounds=` is written only when it differs from the implicit 5000, as glibc and
    Dovecot do.
    """
    salt = "".join(secrets.choice(_ALPHABET) for _ in range(SALT_MAX))
    return _hash_sha_crypt_with_salt(password, ident, rounds, salt)


def _hash_sha_crypt_with_salt(
    password: bytes, ident: ShaCryptId, rounds: int, salt: str, *, explicit: bool = False
) -> str:
    """Test seam: a SHA-crypt string with a chosen salt."""
    if not ROUNDS_MIN <= rounds <= ROUNDS_CEILING:
        raise ValueError(f"SHA-crypt rounds must be in {ROUNDS_MIN}..{ROUNDS_CEILING}")
    if len(salt) > SALT_MAX or not re.fullmatch(r"[!-#%-9;-~]*", salt):
        raise ValueError(
            f"a SHA-crypt salt has at most {SALT_MAX} printable ASCII characters, no '$' or ':'"
        )
    checksum = _sha_crypt_checksum(password, salt.encode("ascii"), rounds, ident)
    rounds_field = f"rounds={rounds}$" if explicit or rounds != ROUNDS_DEFAULT else ""
    return f"${ident}${rounds_field}{salt}${checksum}"


def _sha_crypt_checksum(password: bytes, salt: bytes, rounds: int, ident: ShaCryptId) -> str:
    """Drepper's algorithm, steps 1-21, then the custom base64 encoding of step 22."""
    new = hashlib.sha256 if ident == "5" else hashlib.sha512
    size = 32 if ident == "5" else 64

    def repeat(block: bytes, length: int) -> bytes:
        return (block * (length // len(block) + 1))[:length]

    # Steps 1-12: digest A from password, salt and the "alternate" digest B.
    alternate = new(password + salt + password).digest()
    ctx = new(password + salt)
    ctx.update(repeat(alternate, len(password)))
    length = len(password)
    while length:
        ctx.update(alternate if length & 1 else password)
        length >>= 1
    digest = ctx.digest()

    # Steps 13-20: the byte sequences P and S.
    p_bytes = repeat(new(password * len(password)).digest(), len(password))
    s_bytes = repeat(new(salt * (16 + digest[0])).digest(), len(salt))

    # Step 21: the rounds.
    for i in range(rounds):
        ctx = new(p_bytes if i & 1 else digest)
        if i % 3:
            ctx.update(s_bytes)
        if i % 7:
            ctx.update(p_bytes)
        ctx.update(digest if i & 1 else p_bytes)
        digest = ctx.digest()

    # Step 22: the encoding.
    out: list[str] = []

    def emit(value: int, chars: int) -> None:
        for _ in range(chars):
            out.append(_ALPHABET[value & 0x3F])
            value >>= 6

    if size == 32:
        for a, b, c in _SHA256_ORDER:
            emit(digest[a] << 16 | digest[b] << 8 | digest[c], 4)
        emit(digest[31] << 8 | digest[30], 3)
    else:
        for a, b, c in _SHA512_ORDER:
            emit(digest[a] << 16 | digest[b] << 8 | digest[c], 4)
        emit(digest[63], 2)
    return "".join(out)
