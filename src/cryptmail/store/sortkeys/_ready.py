"""One message's :class:`SortKeys` as bytes, ready: what a sort entry from delivery
holds, so a session's first SORT decodes keys instead of making them.

    keys   = f64 date (NaN: none) || u8 flags || u16 n_refs || u32 length[7 + n_refs]
             || text                       UTF-8 of the strings joined
    flags  = 1: reply, 2: has a Message-ID
    length = code points of subject, from, to, cc, display from, display to,
             message id ("" without one), then each reference, oldest first

Little-endian. ``size`` and ``arrival`` are not kept (the entry and the message row
hold them). Decoding is a few slices, no parsing: about a microsecond a message.
"""

from __future__ import annotations

import math
import struct
import sys
from typing import Final

from cryptmail.store.sortkeys._keys import SortKeys

__all__ = ["decode_ready_keys", "encode_ready_keys"]

_HEAD: Final = struct.Struct("<dBH")
_REPLY: Final = 1
_HAS_ID: Final = 2
_STRINGS: Final = 7
_MAX_REFS: Final = 0xFFFF


def encode_ready_keys(keys: SortKeys) -> bytes:
    """The bytes of ``keys`` (their ``size`` and ``arrival`` left out)."""
    refs = keys.references[-_MAX_REFS:]
    strings = (
        keys.subject, keys.from_, keys.to, keys.cc, keys.display_from, keys.display_to,
        keys.message_id or "", *refs,
    )  # fmt: skip
    flags = (_REPLY if keys.reply else 0) | (_HAS_ID if keys.message_id is not None else 0)
    date = math.nan if keys.date is None else keys.date
    lengths = struct.pack(f"<{len(strings)}I", *(len(s) for s in strings))
    text = "".join(strings).encode("utf-8", "surrogatepass")
    return _HEAD.pack(date, flags, len(refs)) + lengths + text


def decode_ready_keys(data: bytes, size: int = 0, arrival: float = 0.0) -> SortKeys:
    """The keys of :func:`encode_ready_keys`'s bytes, strings interned, ``size`` and
    ``arrival`` set; ValueError when ``data`` is not such bytes."""
    try:
        date, flags, n_refs = _HEAD.unpack_from(data)
        count = _STRINGS + n_refs
        lengths = struct.unpack_from(f"<{count}I", data, _HEAD.size)
        text = data[_HEAD.size + 4 * count :].decode("utf-8", "surrogatepass")
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"ready sort keys unreadable: {exc}") from None
    if sum(lengths) != len(text) or flags & ~(_REPLY | _HAS_ID):
        raise ValueError("ready sort keys have a bad length or flags")
    intern = sys.intern
    strings = []
    pos = 0
    for length in lengths:
        strings.append(intern(text[pos : pos + length]))
        pos += length
    return SortKeys(
        None if date != date else date,  # NaN: no usable Date:
        strings[0], bool(flags & _REPLY), strings[1], strings[2], strings[3], strings[4],
        strings[5], strings[6] if flags & _HAS_ID else None, tuple(strings[_STRINGS:]),
        size, arrival,
    )  # fmt: skip
