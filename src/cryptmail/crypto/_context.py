"""Length-prefixed contexts: the parts that bind a sealed value to its place.

    context(p_1, ..., p_n) = lp(p_1) || ... || lp(p_n),  lp(x) = u16(len(x)) || x

A string part is its UTF-8 bytes, an integer its decimal digits. Two different lists of
parts never encode to the same bytes, so ("ab", "c") and ("a", "bc") bind differently,
which a separator like "|" cannot promise once a part may contain it.
"""

from __future__ import annotations

import struct

_MAX_PART = 0xFFFF


def context(*parts: bytes | str | int) -> bytes:
    """The length-prefixed encoding of `parts` (ValueError for a part over 65535 bytes)."""
    out = bytearray()
    for part in parts:
        if isinstance(part, int):
            data = str(part).encode("ascii")
        elif isinstance(part, str):
            data = part.encode("utf-8")
        else:
            data = bytes(part)
        if len(data) > _MAX_PART:
            raise ValueError("a context part is at most 65535 bytes")
        out += struct.pack(">H", len(data)) + data
    return bytes(out)
