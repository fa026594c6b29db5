"""The sort field record of a message being delivered: made once per message, from the
spooled header, for every recipient's sort entry (`store.SortFields`, which makes the
keys from it once and seals them ready in each copy's entry)."""

from __future__ import annotations

from cryptmail.store import SortHeader, Spool


async def sort_record(spool: Spool) -> bytes | None:
    """`store.header_sort_fields` of the spooled message's header; None when the
    header is longer than `store.MAX_SORT_HEADER`."""
    header = SortHeader()
    data = spool.head()
    if data is not None:
        header.feed(data)
    else:  # on disk: its first pieces, until the empty line
        async for piece in spool.chunks():
            if header.feed(piece):
                break
    return header.record()
