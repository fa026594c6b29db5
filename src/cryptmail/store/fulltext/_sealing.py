"""A segment as stored: compressed, padded and sealed under the user's data key.

    sealed = FieldCipher.seal(u32(len(z)) || z || 0x00 * pad, context("fts-segment", user_id, name))
    z      = zlib(encode_segment(segment))

`name` is 16 random bytes of the segment's row, so a segment moved to another user or
row does not open. The padding rounds the plain size up to a bucket (4 KiB steps below
64 KiB, then 1/16 of the power of two above), so a segment's size tells little more
than roughly how much mail it covers.
"""

from __future__ import annotations

import struct
import zlib

from cryptmail.crypto import context
from cryptmail.errors import MalformedObject
from cryptmail.keys import UnlockedAccount
from cryptmail.store.fulltext._segment import Segment, decode_segment, encode_segment

LABEL = "fts-segment"


def padded_size(size: int) -> int:
    if size <= 64 * 1024:
        return -(-size // 4096) * 4096
    step = (1 << (size - 1).bit_length()) // 16
    return -(-size // step) * step


def _context(account: UnlockedAccount, name: bytes) -> bytes:
    return context(LABEL, account.user.id, name)


def seal_segment(account: UnlockedAccount, name: bytes, segment: Segment) -> bytes:
    packed = zlib.compress(encode_segment(segment), 6)
    plain = struct.pack(">I", len(packed)) + packed
    plain += bytes(padded_size(len(plain)) - len(plain))
    return account.fields.seal(plain, _context(account, name))


def open_segment(account: UnlockedAccount, name: bytes, sealed: bytes) -> Segment:
    """The segment; DecryptionFailed (other key, user or row, or changed) or
    MalformedObject (not a segment this version reads)."""
    plain = account.fields.open(sealed, _context(account, name))
    if len(plain) < 4:
        raise MalformedObject("search index segment is truncated")
    (size,) = struct.unpack_from(">I", plain)
    if 4 + size > len(plain) or any(plain[4 + size :]):
        raise MalformedObject("search index segment has a bad length or padding")
    try:
        data = zlib.decompress(plain[4 : 4 + size])
    except zlib.error as exc:
        raise MalformedObject("search index segment does not decompress") from exc
    return decode_segment(data)
