"""PREVIEW (RFC 8970): a short plain-text look at a message, from its first text part.

The text comes from the first ``text/plain`` part that is not an attachment, or else
the first ``text/html`` one with its markup taken out (script and style contents
dropped, character references decoded). Quoted lines (``>``) are left out and every
run of whitespace becomes one space, as Dovecot does; the result is cut to
:data:`PREVIEW_CHARS` characters (RFC 8970: at most 256). Only the first
:data:`SOURCE_BYTES` stored bytes of the part are read, so a huge message costs no
more than a small one.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from html.parser import HTMLParser
from typing import Final

from cryptmail.imap.message._mime_part import FLAG_TEXT
from cryptmail.imap.message._partmap import PartEntry, PartMap
from cryptmail.imap.message._textsearch import (
    ByteRangeReader,
    body_decoder,
    part_content,
    text_codec,
)

__all__ = [
    "PREVIEW_CHARS",
    "SOURCE_BYTES",
    "make_preview",
    "part_preview",
    "preview_candidates",
    "preview_from_bytes",
    "preview_kind",
]

PREVIEW_CHARS: Final = 200
SOURCE_BYTES: Final = 32 * 1024
"""Stored bytes of the chosen part read at most (before transfer decoding)."""
_BLANKS: Final = re.compile(r"\s+")
_SKIPPED_HTML: Final = frozenset({"script", "style", "head", "title"})
_BREAKS: Final = frozenset({"br", "p", "div", "tr", "li", "h1", "h2", "h3", "blockquote"})


class _HtmlText(HTMLParser):
    """Text of an HTML document: visible character data, line breaks at block tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_HTML:
            self._skipping += 1
        elif tag in _BREAKS:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_HTML and self._skipping:
            self._skipping -= 1
        elif tag in _BREAKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.out.append(data)


def _html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return "".join(parser.out)


def _fold(text: str) -> str:
    lines = (line for line in text.splitlines() if not line.lstrip().startswith(">"))
    folded = _BLANKS.sub(" ", " ".join(lines))
    # Other control characters (a NUL, say) may not appear in an IMAP string at all.
    folded = "".join(char for char in folded if unicodedata.category(char) != "Cc").strip()
    return folded[:PREVIEW_CHARS].rstrip()


def preview_kind(header: bytes) -> str | None:
    """ "plain" or "html" for a leaf text part that may be previewed, else None."""
    data = part_content(header)
    if (data.disposition or b"").lower() == b"attachment":
        return None
    subtype = (data.subtype or b"plain").lower()
    if subtype == b"plain":
        return "plain"
    if subtype == b"html":
        return "html"
    return None


def preview_candidates(part_map: PartMap) -> list[PartEntry]:
    """Leaf text parts, in order: the ones whose header `preview_kind` is asked about."""
    return [part for part in part_map.parts if not part.children and part.flags & FLAG_TEXT]


def part_preview(header: bytes, body: bytes, kind: str) -> str:
    """The preview of one part from its MIME header and (the start of) its stored body."""
    data = part_content(header)
    decoder = body_decoder(data)
    charset = next((v for k, v in data.params if k.lower() == b"charset"), None)
    text_decoder = codecs.getincrementaldecoder(text_codec(charset))(errors="replace")
    text = text_decoder.decode(decoder.feed(body)) + text_decoder.decode(
        decoder.finish(), final=True
    )
    return _fold(_html_to_text(text) if kind == "html" else text)


def make_preview(read: ByteRangeReader, part_map: PartMap) -> str:
    """The preview text of a message ("" when it has no text part to show): the first
    plain part, else the first HTML one."""
    html: tuple[PartEntry, bytes] | None = None
    for part in preview_candidates(part_map):
        header = b"".join(read(part.header_offset, part.header_size))
        kind = preview_kind(header)
        if kind == "plain":
            return _part_text(read, part, header, kind)
        if kind == "html" and html is None:
            html = (part, header)
    if html is None:
        return ""
    return _part_text(read, html[0], html[1], "html")


def _part_text(read: ByteRangeReader, part: PartEntry, header: bytes, kind: str) -> str:
    body = b"".join(read(part.body_offset, min(part.body_size, SOURCE_BYTES)))
    return part_preview(header, body, kind)


def preview_from_bytes(message: bytes, part_map: PartMap) -> str:
    """`make_preview` of a message held in memory."""

    def read(offset: int, length: int) -> list[bytes]:
        return [message[offset : offset + length]]

    return make_preview(read, part_map)
