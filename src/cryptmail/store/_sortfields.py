"""The sort field record of a message: the raw header fields SORT and THREAD read.

    record = ("name:" || value || "\n")*    first occurrence of each field, in header
                                            order, value unfolded and capped

Delivery makes it from the header it spools (once per message, for every recipient's
sort entry: `_sortentries`); IMAP's analysis makes it from the same header fields while
it reads a message, and keeps it in the sealed cache. Both go through this one module,
so a message's keys (`store.sortkeys.sort_keys` turns a record into them) are the same
whichever way the record was made. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

SORT_FIELDS: Final = frozenset(
    {b"date", b"subject", b"from", b"to", b"cc", b"message-id", b"in-reply-to", b"references"}
)
"""Header fields (lower case) SORT and THREAD read; the analysis keeps them."""

_MAX_VALUE: Final = 16 * 1024
"""Longest value kept per field: a References of ~200 ids; longer keeps its end
(the last references name the nearest ancestors, which threading needs most)."""


def _unfold(value: bytes) -> bytes:
    return value.replace(b"\r\n", b"").replace(b"\n", b"").replace(b"\r", b"")


def encode_sort_fields(fields: Iterable[tuple[bytes, bytes]]) -> bytes:
    """``name:value`` lines of the fields SORT reads, first occurrence of each (as Dovecot
    sorts by), values unfolded and capped; ``fields`` are (lower-case name, raw value)."""
    seen: dict[bytes, bytes] = {}
    for name, value in fields:
        if name in SORT_FIELDS and name not in seen:
            flat = _unfold(value)
            if len(flat) > _MAX_VALUE:
                flat = flat[-_MAX_VALUE:] if name == b"references" else flat[:_MAX_VALUE]
            seen[name] = flat
    return b"".join(name + b":" + value + b"\n" for name, value in seen.items())


def decode_sort_fields(record: bytes) -> dict[bytes, bytes]:
    """{name: value} of a record."""
    out: dict[bytes, bytes] = {}
    for line in record.split(b"\n"):
        name, colon, value = line.partition(b":")
        if colon:
            out[name] = value
    return out


_FIELD_SPLIT: Final = re.compile(rb"\r?\n(?![ \t])")


def header_sort_fields(header: bytes) -> bytes:
    """:func:`encode_sort_fields` of a raw message header (delivery's spooled header;
    IMAP's fill-in for caches written before the analysis kept the record)."""
    fields = []
    for raw in _FIELD_SPLIT.split(header):
        name, colon, value = raw.partition(b":")
        if colon:
            fields.append((name.strip().lower(), value.lstrip(b" \t").rstrip(b"\r\n")))
    return encode_sort_fields(fields)
