"""FETCH PREVIEW (RFC 8970) on the server: the cached text, or made once and cached.

A message read for the first time while small is previewed as it is indexed
(`analyze_message(with_preview=True)`), so its preview is in the sealed cache from the
start. A big one, or one indexed before PREVIEW existed, gets it at its first FETCH
PREVIEW: the MIME headers of its text parts and the first `SOURCE_BYTES` of the chosen
part are read by range, and the analysis is stored again, sealed under the data key
like the rest of the cache; never in plaintext. ``PREVIEW (LAZY)`` takes only what is
cached and answers NIL otherwise (RFC 8970 section 3.1), so the client can ask again
without LAZY when it wants to wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from cryptmail.imap.message._partmap import PartEntry
from cryptmail.imap.message._preview import (
    SOURCE_BYTES,
    part_preview,
    preview_candidates,
    preview_kind,
)
from cryptmail.store import MessageRow, OpenedBlob, load_cache, read_range, save_cache

if TYPE_CHECKING:
    from cryptmail.imap.server._fetch import Facts
    from cryptmail.imap.server._selected import SelectedMailbox

Opener = Callable[[], Awaitable[OpenedBlob]]


async def _make(selected: SelectedMailbox, facts: Facts, open_blob: Opener) -> str:
    opened = await open_blob()
    blobs = selected.context.blobs

    async def read(offset: int, length: int) -> bytes:
        out = b""
        while len(out) < length:
            piece = await read_range(blobs, opened, offset + len(out), length - len(out))
            if not piece:
                break
            out += piece
        return out

    async def text_of(part: PartEntry, header: bytes, kind: str) -> str:
        body = await read(part.body_offset, min(part.body_size, SOURCE_BYTES))
        return part_preview(header, body, kind)

    html: tuple[PartEntry, bytes] | None = None
    for part in preview_candidates(facts.analysis.part_map):
        header = await read(part.header_offset, part.header_size)
        kind = preview_kind(header)
        if kind == "plain":
            return await text_of(part, header, kind)
        if kind == "html" and html is None:
            html = (part, header)
    return "" if html is None else await text_of(html[0], html[1], "html")


async def message_preview(
    selected: SelectedMailbox, row: MessageRow, facts: Facts, open_blob: Opener, *, lazy: bool
) -> str | None:
    """The message's preview; None only for ``lazy`` when it is not cached yet.

    Raises what reading the message raises (ObjectTampered, BlobMissing, ...).
    """
    if facts.analysis.preview is not None:
        return facts.analysis.preview
    if lazy:
        return None
    text = await _make(selected, facts, open_blob)
    analysis = facts.analysis._replace(preview=text)
    selected.facts[row.id] = facts._replace(analysis=analysis)
    async with selected.context.engine.begin() as conn:
        cache = await load_cache(conn, selected.account, row.id)
        if cache is not None:
            stored = cache._replace(extra=analysis.to_bytes())
            await save_cache(
                conn, selected.account, row, stored, initial_flags=selected.initial_flags
            )
    return text
