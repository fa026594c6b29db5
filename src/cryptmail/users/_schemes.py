"""Dovecot `{SCHEME}` password hashes: read the ones ISPmail tables hold, write safe ones.

A stored value is `{SCHEME}body` or `{SCHEME.ENCODING}body`, or a bare body that
Dovecot reads with its `default_pass_scheme`. Names and encodings are case-insensitive,
as in Dovecot. Read:

    PLAIN, CLEARTEXT        the password itself
    SSHA512                 base64(sha512(password + salt) + salt)
    BLF-CRYPT               bcrypt: $2y$, $2b$, $2a$
    SHA256-CRYPT            $5$ (also $6$ and bcrypt bodies: Dovecot passes all three
    SHA512-CRYPT            $6$  *-CRYPT schemes to crypt(3), which picks by the body)
    CRYPT                   crypt(3) by body: $2y$/$2b$/$2a$, $5$, $6$
    ARGON2I, ARGON2ID       PHC strings; either body under either name, as libsodium does

`.B64` / `.BASE64` / `.HEX` after a name override its default encoding (base64 for
SSHA512, none for the rest). Written: ARGON2ID (default), ARGON2I, BLF-CRYPT,
SHA512-CRYPT, SHA256-CRYPT.

Everything here is slow on purpose (Argon2, bcrypt, SHA-crypt rounds): call it through
`cryptmail.concurrency.run_kdf`, never on the event loop.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from cryptmail.config import Argon2Params
from cryptmail.errors import MalformedPasswordHash, PasswordRejected, UnsupportedPasswordScheme
from cryptmail.secret import Password
from cryptmail.users import _argon2phc, _blfcrypt, _shacrypt
from cryptmail.users._argon2phc import DEFAULT_ARGON2

Encoding = Literal["none", "base64", "hex"]

WRITABLE_SCHEMES: Final = ("ARGON2I", "ARGON2ID", "BLF-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT")
"""Schemes `hash_password` writes."""

DEFAULT_BCRYPT_COST: Final = 12
DEFAULT_SHA_CRYPT_ROUNDS: Final = _shacrypt.ROUNDS_DEFAULT
"""5000, the implicit value glibc and `doveadm pw` write; prefer ARGON2ID anyway."""

_ENCODINGS: Final[dict[str, Encoding]] = {"B64": "base64", "BASE64": "base64", "HEX": "hex"}
_SHA512_SIZE: Final = 64
_CRYPT_VARIANTS: Final = {
    "1": "$1$ (MD5-CRYPT)",
    "3": "$3$ (NT hash)",
    "7": "$7$ (scrypt)",
    "md5": "$md5$ (Sun MD5)",
    "sha1": "$sha1$ (NetBSD SHA1)",
    "y": "$y$ (yescrypt)",
    "gy": "$gy$ (gost-yescrypt)",
}


class _Scheme(Protocol):
    """One Dovecot scheme: how its body is encoded and how to check a password against it."""

    @property
    def default_encoding(self) -> Encoding: ...

    def verify(self, raw: bytes, password: bytes) -> bool: ...


@dataclass(frozen=True)
class _Plain:
    default_encoding: Encoding = "none"

    def verify(self, raw: bytes, password: bytes) -> bool:
        # Comparing digests keeps the comparison constant-time in the length too.
        return hmac.compare_digest(hashlib.sha256(raw).digest(), hashlib.sha256(password).digest())


@dataclass(frozen=True)
class _SaltedSha512:
    default_encoding: Encoding = "base64"

    def verify(self, raw: bytes, password: bytes) -> bool:
        if len(raw) <= _SHA512_SIZE:
            raise MalformedPasswordHash(
                "a stored SSHA512 password hash is too short to hold a digest and a salt; "
                "set a new password for the user"
            )
        digest, salt = raw[:_SHA512_SIZE], raw[_SHA512_SIZE:]
        return hmac.compare_digest(hashlib.sha512(password + salt).digest(), digest)


@dataclass(frozen=True)
class _Crypt:
    """crypt(3)-style strings; `blowfish_only` is BLF-CRYPT, which Dovecot keeps to `$2`."""

    name: str
    blowfish_only: bool = False
    default_encoding: Encoding = "none"

    def verify(self, raw: bytes, password: bytes) -> bool:
        body = _ascii_body(raw, self.name)
        if _blfcrypt.is_blf_crypt(body):
            return _blfcrypt.verify_blf_crypt(_blfcrypt.parse_blf_crypt(body), password)
        if self.blowfish_only:
            raise MalformedPasswordHash(
                "a stored BLF-CRYPT password hash does not start with $2y$, $2b$ or $2a$; "
                "set a new password for the user"
            )
        if body.startswith(("$5$", "$6$")):
            return _shacrypt.verify_sha_crypt(_shacrypt.parse_sha_crypt(body), password)
        raise UnsupportedPasswordScheme(_crypt_variant_message(self.name, body))


@dataclass(frozen=True)
class _Argon2:
    name: str
    default_encoding: Encoding = "none"

    def verify(self, raw: bytes, password: bytes) -> bool:
        body = _ascii_body(raw, self.name)
        return _argon2phc.verify_argon2(_argon2phc.parse_argon2(body), password)


_SCHEMES: Final[dict[str, _Scheme]] = {
    "PLAIN": _Plain(),
    "CLEARTEXT": _Plain(),
    "SSHA512": _SaltedSha512(),
    "BLF-CRYPT": _Crypt("BLF-CRYPT", blowfish_only=True),
    "SHA256-CRYPT": _Crypt("SHA256-CRYPT"),
    "SHA512-CRYPT": _Crypt("SHA512-CRYPT"),
    "CRYPT": _Crypt("CRYPT"),
    "ARGON2I": _Argon2("ARGON2I"),
    "ARGON2ID": _Argon2("ARGON2ID"),
}


def verify_password(stored: str, password: Password, *, default_scheme: str = "CRYPT") -> bool:
    """Whether `password` matches a stored Dovecot hash. Comparisons are constant-time.

    `default_scheme` plays Dovecot's `default_pass_scheme` for a value without a
    `{SCHEME}` prefix; the default, CRYPT, picks the algorithm from the body (`$2y$`,
    `$5$`, `$6$`). As in Dovecot, a bare `$1$...` value is always MD5-CRYPT. A password
    containing a NUL byte never matches: Dovecot and crypt(3) cannot take one.

    Raises:
        UnsupportedPasswordScheme: the scheme, encoding or crypt variant is not one we read.
        MalformedPasswordHash: the value does not parse, or asks for more work than the
            ceilings allow.
    """
    name, encoding, body = _split(stored, default_scheme)
    scheme = _lookup(name)
    raw = _decode(body, encoding or scheme.default_encoding, name)
    secret = password.reveal()
    if b"\x00" in secret:
        return False
    return scheme.verify(raw, secret)


def hash_password(
    password: Password,
    scheme: str = "ARGON2ID",
    *,
    argon2: Argon2Params = DEFAULT_ARGON2,
    bcrypt_cost: int = DEFAULT_BCRYPT_COST,
    sha_crypt_rounds: int = DEFAULT_SHA_CRYPT_ROUNDS,
) -> str:
    """A new `{SCHEME}...` value for the password, with a fresh random salt.

    `scheme` is one of `WRITABLE_SCHEMES` (case-insensitive). Each scheme reads only its
    own cost argument. This does not apply the password rules; see `check_new_password`.

    Raises:
        UnsupportedPasswordScheme: the scheme is not one we write.
        PasswordRejected: the password contains a NUL byte, or is longer than 72 bytes
            for BLF-CRYPT (bcrypt would ignore the rest).
        ValueError: a cost argument is out of range.
    """
    name = _writable(scheme)
    secret = password.reveal()
    if b"\x00" in secret:
        raise PasswordRejected(
            "the password contains a NUL character, which mail clients and Dovecot cannot "
            "send; choose a password without it"
        )
    if name == "ARGON2ID":
        body = _argon2phc.hash_argon2(secret, "argon2id", argon2)
    elif name == "ARGON2I":
        body = _argon2phc.hash_argon2(secret, "argon2i", argon2)
    elif name == "BLF-CRYPT":
        body = _blfcrypt.hash_blf_crypt(secret, bcrypt_cost)
    elif name == "SHA512-CRYPT":
        body = _shacrypt.hash_sha_crypt(secret, "6", sha_crypt_rounds)
    else:
        body = _shacrypt.hash_sha_crypt(secret, "5", sha_crypt_rounds)
    return f"{{{name}}}{body}"


def needs_rehash(
    stored: str,
    scheme: str = "ARGON2ID",
    *,
    argon2: Argon2Params = DEFAULT_ARGON2,
    bcrypt_cost: int = DEFAULT_BCRYPT_COST,
    sha_crypt_rounds: int = DEFAULT_SHA_CRYPT_ROUNDS,
    default_scheme: str = "CRYPT",
) -> bool:
    """Whether a stored value differs from what `hash_password` would write now.

    True when the stored value is of another scheme (judged by its body for the crypt
    family), has no prefix or an encoding suffix, or was made with other cost settings.
    Call it after a successful `verify_password`, then store a fresh `hash_password`.

    Raises:
        UnsupportedPasswordScheme: the stored scheme is unknown, or `scheme` is not writable.
        MalformedPasswordHash: the stored value does not parse.
    """
    target = _writable(scheme)
    name, encoding, body = _split(stored, default_scheme)
    current = _lookup(name)
    raw = _decode(body, encoding or current.default_encoding, name)
    if not isinstance(current, _Crypt | _Argon2):
        return True
    text = _ascii_body(raw, name)
    labelled = stored.upper().startswith(f"{{{target}}}")
    if isinstance(current, _Argon2):
        parsed_argon2 = _argon2phc.parse_argon2(text)
        return not (labelled and parsed_argon2.scheme == target and parsed_argon2.matches(argon2))
    if _blfcrypt.is_blf_crypt(text):
        parsed_blf = _blfcrypt.parse_blf_crypt(text)
        return not (labelled and target == "BLF-CRYPT" and parsed_blf.cost == bcrypt_cost)
    if text.startswith(("$5$", "$6$")):
        parsed_sha = _shacrypt.parse_sha_crypt(text)
        return not (
            labelled and parsed_sha.scheme == target and parsed_sha.rounds == sha_crypt_rounds
        )
    raise UnsupportedPasswordScheme(_crypt_variant_message(name, text))


def _split(stored: str, default_scheme: str) -> tuple[str, Encoding | None, str]:
    """(scheme name upper-cased, explicit encoding or None, body), as Dovecot splits."""
    if stored.startswith("$1$"):
        return "MD5-CRYPT", None, stored
    if stored.startswith("{") and "}" in stored:
        label, body = stored[1:].split("}", 1)
    else:
        label, body = default_scheme, stored
    name, dot, suffix = label.upper().partition(".")
    if not dot:
        return name, None, body
    encoding = _ENCODINGS.get(suffix)
    if encoding is None:
        raise UnsupportedPasswordScheme(
            f"password scheme {_printable(label)} has an unknown encoding suffix; "
            "Dovecot knows .B64, .BASE64 and .HEX"
        )
    return name, encoding, body


def _lookup(name: str) -> _Scheme:
    scheme = _SCHEMES.get(name)
    if scheme is None:
        raise UnsupportedPasswordScheme(
            f"password scheme {_printable(name)} is not supported; cryptmail reads "
            f"{', '.join(sorted(_SCHEMES))}. Set a new password for the user"
        )
    return scheme


def _writable(scheme: str) -> str:
    name = scheme.upper()
    if name not in WRITABLE_SCHEMES:
        raise UnsupportedPasswordScheme(
            f"cryptmail does not write {_printable(name)} password hashes; "
            f"use one of {', '.join(WRITABLE_SCHEMES)}"
        )
    return name


def _decode(body: str, encoding: Encoding, name: str) -> bytes:
    if encoding == "none":
        return body.encode("utf-8", "surrogateescape")
    try:
        if encoding == "hex":
            if re.fullmatch(r"(?:[0-9A-Fa-f]{2})*", body) is None:
                raise ValueError("not hex")
            return binascii.unhexlify(body)
        return binascii.a2b_base64(body.encode("ascii"), strict_mode=True)
    except (ValueError, binascii.Error) as exc:
        raise MalformedPasswordHash(
            f"a stored {name} password hash is not valid {encoding}; "
            "set a new password for the user"
        ) from exc


def _ascii_body(raw: bytes, name: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedPasswordHash(
            f"a stored {name} password hash contains non-ASCII bytes; "
            "set a new password for the user"
        ) from exc


def _crypt_variant_message(name: str, body: str) -> str:
    # Only a known identifier is named: an unknown body may be a password stored bare.
    match = re.match(r"\$([0-9A-Za-z]{1,4})\$", body)
    variant = _CRYPT_VARIANTS.get(match[1] if match else "", "DES or unknown")
    return (
        f"{name} variant {variant} is not supported; cryptmail reads $2y$, $2b$, $2a$, "
        "$5$ and $6$. Set a new password for the user"
    )


def _printable(name: str) -> str:
    """A scheme name fit for a message: short, printable, never a piece of the hash."""
    if re.fullmatch(r"[A-Za-z0-9._-]{1,32}", name):
        return name
    return "(unreadable name)"
