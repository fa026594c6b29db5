"""Encodings of sealed index values: flags, the message cache record, folder names.

Flags are padded to a multiple of 32 bytes before sealing so their length does not tell
which flags are set.
"""

from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass

from cryptmail.errors import ObjectTampered

_PAD = 32
_CACHE_HEAD = struct.Struct(">BBQ")  # version, flags (bit0: message key present), size
_CACHE_VERSION = 1


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


@dataclass(frozen=True, repr=False)
class MessageCache:
    """What the first session that reads a message remembers about it, sealed.

    `message_key` saves the EC unwrap on every later read; `size` is the exact size;
    `extra` belongs to the protocol layer (envelope, body structure, part map).
    """

    size: int
    message_key: bytes | None
    extra: bytes = b""

    def __repr__(self) -> str:
        return f"MessageCache(size={self.size}, extra={len(self.extra)} bytes)"

    def encode(self) -> bytes:
        has_key = self.message_key is not None
        head = _CACHE_HEAD.pack(_CACHE_VERSION, 1 if has_key else 0, self.size)
        return head + (self.message_key or b"") + self.extra

    @classmethod
    def decode(cls, data: bytes) -> MessageCache:
        try:
            version, bits, size = _CACHE_HEAD.unpack_from(data)
        except struct.error as exc:
            raise ObjectTampered("a message cache record is truncated") from exc
        if version != _CACHE_VERSION:
            raise ObjectTampered(f"message cache version {version} is unknown")
        offset = _CACHE_HEAD.size
        key = None
        if bits & 1:
            key = data[offset : offset + 32]
            offset += 32
        return cls(size=size, message_key=key, extra=data[offset:])


def round_size(size: int) -> int:
    """The size kept in plain: rounded up to 4 KiB (quota needs it, nobody needs more)."""
    return -(-size // 4096) * 4096
