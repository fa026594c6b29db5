"""The sort field record of a message being delivered: made once per message, from the
spooled header, for every recipient's sort entry (`store.SortFields`, which makes the
keys from it once and seals them ready in each copy's entry)."""

from __future__ import annotations

from typing import Final

from cryptmail.store import Spool, header_sort_fields

MAX_HEADER: Final = 1024 * 1024
"""A header longer than this gets no record: the copies are sorted the slow way (a
record made from part of a header could miss a field and sort differently)."""


def _header_end(data: bytes | bytearray) -> int:
    """The end of the header (after its empty line) in ``data``; -1 if not in it."""
    if data.startswith(b"\n"):  # an empty header, as the IMAP analysis reads it
        return 1
    if data.startswith(b"\r\n"):
        return 2
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n", 0, len(data) if crlf < 0 else crlf + 2)
    if lf >= 0:
        return lf + 2
    return crlf + 4 if crlf >= 0 else -1


async def sort_record(spool: Spool) -> bytes | None:
    """`store.header_sort_fields` of the spooled message's header; None when the
    header is longer than MAX_HEADER."""
    data: bytes | bytearray | None = spool.head()
    if data is None:  # on disk: its first pieces, until the empty line
        data = bytearray()
        async for piece in spool.chunks():
            data += piece
            if _header_end(data) >= 0 or len(data) > MAX_HEADER:
                break
    end = _header_end(data)
    head = bytes(data[:end]) if end >= 0 else bytes(data)
    if len(head) > MAX_HEADER:
        return None
    return header_sort_fields(head)
