"""Header values as text: RFC 2047 encoded words decoded, MIME charsets to codecs.

Dovecot's way: blanks between two encoded words vanish, a word may hold blanks before
its closing "?=", an unknown charset reads as UTF-8, and 8-bit bytes outside encoded
words are UTF-8 where valid, else Latin-1. Pure: used by IMAP (SEARCH, previews) and
by the sort keys delivery makes.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from typing import Final

__all__ = ["decode_header_value", "text_codec"]

# Like Dovecot, a word may hold blanks before its closing "?=" and still decode.
_ENCODED_WORD: Final = re.compile(
    rb"=\?([^?]+)\?([QqBb])\?([^?]*)\?=(?:[ \t\r\n]+(?==\?[^?]+\?[QqBb]\?[^?]*\?=))?"
)


def text_codec(charset: bytes | str | None) -> str:
    """The Python codec for a MIME charset; UTF-8 when it is missing or unknown."""
    return _codec(charset)


def _codec(charset: bytes | str | None) -> str:
    name = charset.decode("ascii", "replace") if isinstance(charset, bytes) else charset
    if not name:
        return "utf-8"
    name = name.split("*", 1)[0]  # RFC 2231 language suffix
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "utf-8"


def _bytes_to_text(raw: bytes) -> str:
    """UTF-8 where it is valid; each stray 8-bit byte read as Latin-1."""
    text = raw.decode("utf-8", "surrogateescape")
    if not any("\udc80" <= char <= "\udcff" for char in text):
        return text
    return "".join(
        chr(ord(char) - 0xDC00) if "\udc80" <= char <= "\udcff" else char for char in text
    )


def decode_header_value(raw: bytes) -> str:
    """Unfold a header value and decode its encoded words; 8-bit bytes as UTF-8 (else
    Latin-1). Blanks between two encoded words vanish, as RFC 2047 says."""
    raw = raw.replace(b"\r\n", b"").replace(b"\n", b"")
    out: list[str] = []
    pos = 0
    for match in _ENCODED_WORD.finditer(raw):
        out.append(_bytes_to_text(raw[pos : match.start()]))
        charset, encoding, payload = match.group(1), match.group(2).upper(), match.group(3)
        try:
            if encoding == b"B":
                data = base64.b64decode(payload + b"=" * (-len(payload) % 4))
            else:
                data = binascii.a2b_qp(payload.replace(b"_", b" "), header=True)
            out.append(data.decode(_codec(charset), "replace"))
        except (binascii.Error, ValueError):
            out.append(_bytes_to_text(match.group(0)))
        pos = match.end()
    out.append(_bytes_to_text(raw[pos:]))
    return "".join(out)
