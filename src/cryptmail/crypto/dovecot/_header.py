"""Headers of Dovecot mail-crypt files, v1 and v2 (spec §3.2, §3.3, §3.8).

Parsing rules are rejection rules: every length must add up exactly, the flags must be
one integrity mode that fits the cipher, the hash chain must be the hash's full size,
and the PBKDF2 round count has a ceiling, all checked before any key work.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import BinaryIO

from cryptmail.crypto.dovecot._constants import (
    AEAD_TAG_SIZE,
    FLAG_AEAD,
    FLAG_HMAC,
    FLAG_NO_INTEGRITY,
    KEY_TYPE_EC,
    KEY_TYPE_RSA,
    MAX_HEADER_SIZE,
    MAX_PBKDF2_ROUNDS,
    STREAM_CIPHERS,
    STREAM_HASHES,
    STREAM_MAGIC,
    STREAM_VERSION_1,
    STREAM_VERSION_2,
)
from cryptmail.crypto.dovecot._der import decode_oid
from cryptmail.errors import DovecotFormatError

_WHAT = "Dovecot mail file"
_CIPHER_BY_OID = {oid: name for name, (oid, _, _, _) in STREAM_CIPHERS.items()}
_HASH_BY_OID = {oid: name for name, oid in STREAM_HASHES.items()}
_V1_CIPHER = "aes-256-ctr"
V2_FIXED_SIZE = len(STREAM_MAGIC) + 1 + 4 + 4


@dataclass(frozen=True)
class DovecotRecipient:
    """One recipient of a file's per-mail key: key type, recipient key id (lowercase hex;
    old-style in v1 files), the ephemeral public point (EC) and the wrapped key."""

    key_type: int
    key_id: str
    ephemeral_key: bytes
    wrapped_key: bytes = field(repr=False)

    @property
    def algorithm(self) -> str:
        """The recipient key type by name: EC or RSA."""
        return "RSA" if self.key_type == KEY_TYPE_RSA else "EC"


@dataclass(frozen=True)
class DovecotHeader:
    """A parsed file header. `size` is the offset where the body starts.

    v2: `cipher` and `digest` are names ("aes-256-gcm", "sha256"), `key_hash` the key-data
    hash chain. v1: cipher "aes-256-ctr", digest "sha256", rounds 0, flags 0, and
    `key_hash` is SHA-256 of the seed (the recipient's `wrapped_key` is the locked seed).
    """

    version: int
    flags: int
    size: int
    cipher: str
    digest: str
    rounds: int
    recipients: tuple[DovecotRecipient, ...]
    key_hash: bytes

    @property
    def trailer_size(self) -> int:
        """Bytes after the body: the GCM tag, the HMAC, or nothing."""
        if self.flags & FLAG_AEAD:
            return AEAD_TAG_SIZE
        if self.flags & FLAG_HMAC:
            return hashlib.new(self.digest).digest_size
        return 0

    @property
    def authenticated(self) -> bool:
        """Whether the body is protected by a tag or an HMAC (v1 files never are)."""
        return self.version == STREAM_VERSION_2 and bool(self.flags & (FLAG_AEAD | FLAG_HMAC))


class _Reader:
    def __init__(self, data: bytes, offset: int) -> None:
        self.data = data
        self.offset = offset

    def take(self, size: int, what: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise DovecotFormatError(f"{_WHAT} header is truncated in its {what}")
        piece = self.data[self.offset : end]
        self.offset = end
        return piece

    def number(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def counted(self, length_size: int, what: str) -> bytes:
        return self.take(self.number(length_size, what), what)


def parse_dovecot_header(data: bytes) -> DovecotHeader:
    """Parse the header at the start of `data`, which must hold at least the whole header.

    Raises DovecotFormatError if the magic, version, flags, algorithms or any length
    field is not what Dovecot 2.3 writes.
    """
    if not data.startswith(STREAM_MAGIC) or len(data) <= len(STREAM_MAGIC):
        raise DovecotFormatError(f"{_WHAT} does not start with the mail-crypt magic")
    version = data[len(STREAM_MAGIC)]
    if version == STREAM_VERSION_2:
        return _parse_v2(data)
    if version == STREAM_VERSION_1:
        return _parse_v1(data)
    raise DovecotFormatError(f"{_WHAT} has unknown format version {version}")


def _parse_v2(data: bytes) -> DovecotHeader:
    reader = _Reader(data, len(STREAM_MAGIC) + 1)
    flags = reader.number(4, "flags")
    size = reader.number(4, "header length")
    if not V2_FIXED_SIZE < size <= min(len(data), MAX_HEADER_SIZE):
        raise DovecotFormatError(f"{_WHAT} header length {size} is impossible or truncated")
    reader.data = data[:size]
    cipher_oid, reader.offset = decode_oid(reader.data, reader.offset)
    digest_oid, reader.offset = decode_oid(reader.data, reader.offset)
    cipher = _CIPHER_BY_OID.get(cipher_oid)
    digest = _HASH_BY_OID.get(digest_oid)
    if cipher is None or digest is None:
        raise DovecotFormatError(
            f"{_WHAT} uses cipher {cipher_oid} and hash {digest_oid}; supported are "
            f"{', '.join(STREAM_CIPHERS)} with {', '.join(STREAM_HASHES)}"
        )
    _check_flags(flags, cipher)
    rounds = reader.number(4, "rounds")
    if not 1 <= rounds <= MAX_PBKDF2_ROUNDS:
        raise DovecotFormatError(f"{_WHAT} asks for {rounds} PBKDF2 rounds; refused")
    if reader.number(4, "key data length") != size - reader.offset:
        raise DovecotFormatError(f"{_WHAT} key data length disagrees with the header length")
    count = reader.number(1, "recipient count")
    if count == 0:
        raise DovecotFormatError(f"{_WHAT} has no recipient")
    recipients = tuple(_parse_recipient(reader) for _ in range(count))
    key_hash = reader.counted(4, "key data hash")
    if len(key_hash) != hashlib.new(digest).digest_size or reader.offset != size:
        raise DovecotFormatError(f"{_WHAT} key data section is malformed")
    return DovecotHeader(
        STREAM_VERSION_2, flags, size, cipher, digest, rounds, recipients, key_hash
    )


def _check_flags(flags: int, cipher: str) -> None:
    aead = STREAM_CIPHERS[cipher][3]
    allowed = (FLAG_AEAD,) if aead else (FLAG_HMAC, FLAG_NO_INTEGRITY)
    if flags not in allowed:
        raise DovecotFormatError(f"{_WHAT} has flags {flags:#x}, impossible with {cipher}")


def _parse_recipient(reader: _Reader) -> DovecotRecipient:
    key_type = reader.number(1, "recipient key type")
    recipient_id = reader.take(32, "recipient key id").hex()
    ephemeral = reader.counted(4, "ephemeral key")
    wrapped = reader.counted(4, "wrapped key")
    if key_type not in (KEY_TYPE_EC, KEY_TYPE_RSA) or (key_type == KEY_TYPE_RSA) == bool(ephemeral):
        raise DovecotFormatError(f"{_WHAT} recipient has key type {key_type} or a bad key")
    return DovecotRecipient(key_type, recipient_id, ephemeral, wrapped)


def _parse_v1(data: bytes) -> DovecotHeader:
    reader = _Reader(data, len(STREAM_MAGIC) + 1)
    size = reader.number(2, "key data length") + reader.offset
    if size > len(data):
        raise DovecotFormatError(f"{_WHAT} (v1) header is truncated")
    reader.data = data[:size]
    ephemeral = reader.counted(2, "ephemeral key")
    recipient_id = reader.counted(2, "recipient key id")
    seed_hash = reader.counted(2, "seed hash")
    locked_seed = reader.counted(2, "encrypted seed")
    if (len(recipient_id), len(seed_hash), len(locked_seed)) != (32, 32, 32) or (
        reader.offset != size or not ephemeral
    ):
        raise DovecotFormatError(f"{_WHAT} (v1) key data section is malformed")
    recipient = DovecotRecipient(KEY_TYPE_EC, recipient_id.hex(), ephemeral, locked_seed)
    return DovecotHeader(
        STREAM_VERSION_1, 0, size, _V1_CIPHER, "sha256", 0, (recipient,), seed_hash
    )


def read_dovecot_header(fileobj: BinaryIO) -> DovecotHeader | None:
    """The header of the mail file at the stream's position, or None if the file is not
    encrypted (empty, or no magic). Leaves the position after what it read.

    Raises DovecotFormatError if the header is malformed or truncated.
    """
    start = fileobj.read(len(STREAM_MAGIC) + 1)
    # Dovecot serves anything that does not start with the whole magic as plain text,
    # even a short file that is a beginning of the magic.
    if not start.startswith(STREAM_MAGIC):
        return None
    if len(start) == len(STREAM_MAGIC):
        raise DovecotFormatError(f"{_WHAT} ends right after its magic")
    if start[-1] == STREAM_VERSION_2:
        fixed = start + fileobj.read(V2_FIXED_SIZE - len(start))
        size = int.from_bytes(fixed[-4:], "big") if len(fixed) == V2_FIXED_SIZE else 0
        wanted = min(size, MAX_HEADER_SIZE + 1) - len(fixed)
    elif start[-1] == STREAM_VERSION_1:
        fixed = start + fileobj.read(2)
        wanted = int.from_bytes(fixed[-2:], "big") if len(fixed) == len(start) + 2 else 0
    else:
        raise DovecotFormatError(f"{_WHAT} has unknown format version {start[-1]}")
    return parse_dovecot_header(fixed + fileobj.read(max(wanted, 0)))
