"""Text for SEARCH: decoded header values and the decoded text of a message's parts.

Matching follows Dovecot: encoded words (RFC 2047) and body transfer encodings are
decoded, charsets converted to Unicode, and both sides compared after Unicode case
folding and compatibility normalisation. Bodies are decoded as a stream from the
part map's byte ranges, so a 50 MB message is never held whole.
"""

from __future__ import annotations

import binascii
import codecs
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from cryptmail.imap.message._mime_part import FLAG_TEXT, PartData
from cryptmail.imap.message._partmap import PartMap
from cryptmail.store.headers import decode_header_value, text_codec

__all__ = [
    "body_decoder",
    "decode_header_value",
    "fold_text",
    "iter_labelled_text",
    "iter_message_text",
    "part_content",
    "stream_contains",
    "text_codec",
]

_QP_LINE_CARRY: Final = 8192
ByteRangeReader = Callable[[int, int], Iterable[bytes]]
"""``read(offset, length)`` yields the stored message bytes of that range in chunks."""


def fold_text(text: str) -> str:
    """The comparison form: decomposed (NFKD), case folded, tabs as spaces."""
    return unicodedata.normalize("NFKD", text).casefold().replace("\t", " ")


class _Base64Stream:
    def __init__(self) -> None:
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._carry + bytes(c for c in chunk if c not in b" \t\r\n")
        usable = len(data) - len(data) % 4
        self._carry = data[usable:]
        try:
            return binascii.a2b_base64(data[:usable])
        except binascii.Error:
            return b""

    def finish(self) -> bytes:
        tail, self._carry = self._carry, b""
        try:
            return binascii.a2b_base64(tail + b"=" * (-len(tail) % 4)) if tail else b""
        except binascii.Error:
            return b""


class _QuotedPrintableStream:
    def __init__(self) -> None:
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._carry + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < _QP_LINE_CARRY:
            self._carry = data
            return b""
        if cut == 0:
            cut = len(data)
        self._carry = data[cut:]
        return binascii.a2b_qp(data[:cut])

    def finish(self) -> bytes:
        tail, self._carry = self._carry, b""
        return binascii.a2b_qp(tail)


class _Identity:
    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def finish(self) -> bytes:
        return b""


def _header_text(header: bytes) -> str:
    """Each field decoded and unfolded on its own line."""
    fields = re.split(rb"\r?\n(?![ \t])", header)
    return "\n".join(decode_header_value(field) for field in fields) + "\n"


BodyDecoder = _Base64Stream | _QuotedPrintableStream | _Identity


def body_decoder(data: PartData) -> BodyDecoder:
    """A streaming decoder for the part's Content-Transfer-Encoding."""
    encoding = (data.transfer_encoding or b"7bit").lower()
    if encoding == b"base64":
        return _Base64Stream()
    if encoding == b"quoted-printable":
        return _QuotedPrintableStream()
    return _Identity()


def part_content(header: bytes) -> PartData:
    """The Content-* fields of a part's MIME header."""
    return _part_data(header)


def _part_data(header: bytes) -> PartData:
    data = PartData()
    current: list[bytes] = []

    def flush() -> None:
        if not current:
            return
        line = b"\n".join(current)
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower().startswith(b"content-"):
            data.add_header(name.strip().lower(), value.lstrip(b" \t"))
        current.clear()

    for line in header.replace(b"\r\n", b"\n").split(b"\n"):
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
            continue
        flush()
        if line:
            current.append(line)
    flush()
    return data


def iter_message_text(
    read: ByteRangeReader, part_map: PartMap, *, include_headers: bool
) -> Iterator[str]:
    """Decoded text of the message: text/* bodies (and all headers, for TEXT), in order.

    ``read`` gives stored bytes by range; each part's MIME header is read whole (it is
    small) and its body streamed through the transfer and charset decoders.
    """
    for _header, text in iter_labelled_text(read, part_map, include_headers=include_headers):
        yield text


def iter_labelled_text(
    read: ByteRangeReader, part_map: PartMap, *, include_headers: bool = True
) -> Iterator[tuple[bool, str]]:
    """`iter_message_text` with each chunk marked True when it is header text, so one
    pass can give both BODY's text (the unmarked chunks) and TEXT's (all of them)."""
    for part in part_map.parts:
        header = b"".join(read(part.header_offset, part.header_size))
        if include_headers:
            yield True, _header_text(header)
        if part.children or not part.flags & FLAG_TEXT:
            continue
        data = _part_data(header)
        decoder = body_decoder(data)
        charset = next((v for k, v in data.params if k.lower() == b"charset"), None)
        text_decoder = codecs.getincrementaldecoder(text_codec(charset))(errors="replace")
        for chunk in read(part.body_offset, part.body_size):
            text = text_decoder.decode(decoder.feed(chunk))
            if text:
                yield False, text
        tail = text_decoder.decode(decoder.finish(), final=True)
        if tail:
            yield False, tail


def stream_contains(chunks: Iterable[str], needle: str) -> bool:
    """Whether the folded text of ``chunks`` contains the folded ``needle``, looking
    across chunk borders and keeping only ``len(needle)`` characters between chunks."""
    folded_needle = fold_text(needle)
    if not folded_needle:
        return True
    keep = len(folded_needle) - 1
    tail = ""
    for chunk in chunks:
        window = tail + fold_text(chunk)
        if folded_needle in window:
            return True
        tail = window[-keep:] if keep else ""
    return False
