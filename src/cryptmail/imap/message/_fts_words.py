"""The words of one message for the full-text index, read exactly as SEARCH reads it.

Each field's words come from the very text the matcher searches: the BODY and TEXT
streams of `iter_message_text` (both from one pass, `iter_labelled_text`), each chunk
folded by `fold_text` and the chunks joined (a word cut by a chunk border is carried
over), and each top-level Subject/From/To/Cc/Bcc value in `searchable_header` form.
So a stored word is always a substring of what the matcher would search, which is what
lets the index prove a single-word match.
Chunks are cut where `MessageView.text` cuts them (`PIECE`), because folding a chunk
whole and in two halves can differ at the border (canonical reordering of combining
marks split between chunks).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from cryptmail.imap.message._analysis import analyze_message
from cryptmail.imap.message._partmap import PartMap
from cryptmail.imap.message._search import searchable_header
from cryptmail.imap.message._textsearch import fold_text, iter_labelled_text
from cryptmail.store.fulltext import BODY, BODY_ONLY, HEADER_FIELDS, TEXT_EXTRA, TokenStream, tokens

__all__ = ["PIECE", "header_fields", "message_words"]

PIECE: Final = 256 * 1024
_FIELD_SPLIT: Final = re.compile(rb"\r?\n(?![ \t])")


def header_fields(header: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-cased name, raw value) of each field of a header block, as SEARCH reads them."""
    fields = []
    for raw in _FIELD_SPLIT.split(header):
        key, colon, value = raw.partition(b":")
        if colon:
            fields.append((key.strip().lower(), value.lstrip(b" \t").rstrip(b"\r\n")))
    return fields


def _stream_words(message: bytes, part_map: PartMap) -> tuple[set[str], set[str]]:
    """The words of BODY's text and of TEXT's text, from one decoding pass."""

    def read(offset: int, length: int) -> Iterator[bytes]:
        end = min(offset + length, len(message))
        while offset < end:
            step = min(PIECE, end - offset)
            yield message[offset : offset + step]
            offset += step

    body, text = TokenStream(), TokenStream()
    for is_header, chunk in iter_labelled_text(read, part_map):
        folded = fold_text(chunk)
        if not is_header:
            body.feed(folded)
        text.feed(folded)
    return body.finish(), text.finish()


def message_words(message: bytes) -> dict[int, set[str]]:
    """{field id: words} of a whole message (fields of `cryptmail.store.fulltext`)."""
    part_map = analyze_message(message).part_map
    body, text = _stream_words(message, part_map)
    out: dict[int, set[str]] = {BODY: body, TEXT_EXTRA: text - body, BODY_ONLY: body - text}
    root = part_map.parts[0]
    header = message[root.header_offset : root.header_offset + root.header_size]
    for name, value in header_fields(header):
        field_id = HEADER_FIELDS.get(name.decode("ascii", "replace"))
        if field_id is not None:
            found = tokens(searchable_header(name.decode("ascii"), value))
            out.setdefault(field_id, set()).update(found)
    return out
