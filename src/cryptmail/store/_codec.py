"""Encodings of sealed index values: flags, the message cache record, folder names.

Flags are padded to a multiple of 32 bytes before sealing so their length does not tell
which flags are set.
"""

from __future__ import annotations

import functools
import json
import struct
from typing import NamedTuple

from cryptmail.crypto import PayloadKey
from cryptmail.errors import MalformedObject, ObjectTampered

_PAD = 32
# version, flags (bit 0: message key present, bit 1: payload key present), size
_CACHE_HEAD = struct.Struct(">BBQ")
_CACHE_VERSION = 1
_HAS_MESSAGE_KEY, _HAS_PAYLOAD_KEY = 1, 2


RECENT_FLAG = "\\Recent"


def flags_context(row_id: int) -> bytes:
    """The sealing context of a row's flags (bound to the row id)."""
    return b"flags|" + str(row_id).encode()


def encode_flags(flags: frozenset[str]) -> bytes:
    raw = json.dumps(sorted(flags), separators=(",", ":")).encode("utf-8")
    return raw + b" " * (-len(raw) % _PAD)


@functools.lru_cache(maxsize=1024)
def decode_flags(data: bytes) -> frozenset[str]:
    # Cached: a mailbox holds few distinct flag sets, and SELECT decodes one per message.
    try:
        value = json.loads(data.rstrip(b" ").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ObjectTampered("a flags value does not decode") from exc
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise ObjectTampered("a flags value is not a list of strings")
    return frozenset(value)


class CachedKey(NamedTuple):
    """What a sealed cache may hold to open a blob without the private key."""

    message_key: bytes | None = None
    payload_key: PayloadKey | None = None

    @property
    def empty(self) -> bool:
        return self.message_key is None and self.payload_key is None


class MessageCache(NamedTuple):
    """What the first session that reads a message remembers about it, sealed.

    `payload_key` (or, in records written before it existed, `message_key`) saves the
    EC unwrap on every later read, and the payload key the HKDF too; `size` is the
    exact size; `extra` belongs to the protocol layer (envelope, body structure, part
    map).
    """

    size: int
    message_key: bytes | None
    extra: bytes = b""
    payload_key: PayloadKey | None = None

    def __repr__(self) -> str:
        return f"MessageCache(size={self.size}, extra={len(self.extra)} bytes)"

    @property
    def key(self) -> CachedKey:
        return CachedKey(self.message_key, self.payload_key)

    def encode(self) -> bytes:
        bits = (_HAS_MESSAGE_KEY if self.message_key is not None else 0) | (
            _HAS_PAYLOAD_KEY if self.payload_key is not None else 0
        )
        head = _CACHE_HEAD.pack(_CACHE_VERSION, bits, self.size)
        payload = self.payload_key.to_bytes() if self.payload_key is not None else b""
        return head + (self.message_key or b"") + payload + self.extra

    @classmethod
    def decode(cls, data: bytes) -> MessageCache:
        try:
            version, bits, size = _CACHE_HEAD.unpack_from(data)
        except struct.error as exc:
            raise ObjectTampered("a message cache record is truncated") from exc
        if version != _CACHE_VERSION:
            raise ObjectTampered(f"message cache version {version} is unknown")
        offset = _CACHE_HEAD.size
        key = payload_key = None
        if bits & _HAS_MESSAGE_KEY:
            key = data[offset : offset + 32]
            offset += 32
        if bits & _HAS_PAYLOAD_KEY:
            end = offset + PayloadKey.SIZE
            try:
                payload_key = PayloadKey.from_bytes(data[offset:end])
            except MalformedObject as exc:
                raise ObjectTampered("a message cache record is truncated") from exc
            offset = end
        return cls(size=size, message_key=key, extra=data[offset:], payload_key=payload_key)


def round_size(size: int) -> int:
    """The size kept in plain: rounded up to 4 KiB (quota needs it, nobody needs more)."""
    return -(-size // 4096) * 4096
