"""The sort field record of a message: the raw header fields SORT and THREAD read.

    record = ("name:" || value || "\n")*    first occurrence of each field, in header
                                            order, value unfolded and capped

Delivery makes it from the header it spools (once per message, for every recipient's
sort entry: `_sortentries`), an import from the header of each file it seals (taken
with `SortHeader` as the bytes pass to the blob); IMAP's analysis makes it from the
same header fields while it reads a message, and keeps it in the sealed cache. All go
through this one module, so a message's keys (`store.sortkeys.sort_keys` turns a
record into them) are the same whichever way the record was made. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

SORT_FIELDS: Final = frozenset(
    {b"date", b"subject", b"from", b"to", b"cc", b"message-id", b"in-reply-to", b"references"}
)
"""Header fields (lower case) SORT and THREAD read; the analysis keeps them."""

MAX_SORT_HEADER: Final = 1024 * 1024
"""A header longer than this gets no record from `SortHeader`: the message is sorted
the slow way (a record made from part of a header could miss a field and sort
differently)."""

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


def _header_end(data: bytes | bytearray, start: int = 0) -> int:
    """The end of the header (after its empty line) in ``data``; -1 if not in it.
    ``start``: no empty line ends before it (so a search resumes where it stopped)."""
    if data.startswith(b"\n"):  # an empty header, as the IMAP analysis reads it
        return 1
    if data.startswith(b"\r\n"):
        return 2
    crlf = data.find(b"\r\n\r\n", start)
    lf = data.find(b"\n\n", start, len(data) if crlf < 0 else crlf + 2)
    if lf >= 0:
        return lf + 2
    return crlf + 4 if crlf >= 0 else -1


class SortHeader:
    """A message's header, taken from its first pieces as they pass by (delivery's
    spool, an import's bytes on their way to the blob), for its sort field record.
    It keeps nothing past the header (or MAX_SORT_HEADER), and only in memory: the
    record is plaintext, held until the sealed entry is written."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._end = -1

    def __repr__(self) -> str:
        return f"SortHeader(taken={len(self._data)}, complete={self.complete})"

    @property
    def complete(self) -> bool:
        """The header ended, or is past MAX_SORT_HEADER: no more pieces are needed."""
        return self._end >= 0 or len(self._data) > MAX_SORT_HEADER

    def feed(self, piece: bytes | bytearray) -> bool:
        """Take the message's next bytes; `complete` after them."""
        if self.complete:
            return True
        # An empty line found now ends in `piece`: it starts at most 3 bytes before.
        start = max(0, len(self._data) - 3)
        self._data += piece
        self._end = _header_end(self._data, start)
        return self.complete

    def record(self) -> bytes | None:
        """:func:`header_sort_fields` of the header fed (all that was fed when it had
        no empty line); None when the header is longer than MAX_SORT_HEADER."""
        head = self._data[: self._end] if self._end >= 0 else self._data
        if len(head) > MAX_SORT_HEADER:
            return None
        return header_sort_fields(bytes(head))
