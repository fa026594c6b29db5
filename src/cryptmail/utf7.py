"""Modified UTF-7 for mailbox names (RFC 3501 section 5.1.3), the one codec for IMAP and
the Maildir import.

Printable US-ASCII except ``&`` stands for itself, ``&`` is written ``&-``, and every
other run of characters is the modified-BASE64 (``,`` for ``/``, no padding) of its
UTF-16BE form between ``&`` and ``-``. Decoding is strict by default (what the IMAP
parser needs): only the one canonical encoding of a name is accepted, so two spellings
never name the same mailbox. ``strict=False`` reads names other programs wrote on disk:
characters outside printable ASCII stand for themselves, and a run need only be valid
BASE64 of whole UTF-16 characters.
"""

from __future__ import annotations

import binascii
from typing import Final

from cryptmail.errors import ParseError

__all__ = ["decode_mailbox_name", "encode_mailbox_name"]

_PRINTABLE_FIRST: Final = 0x20
_PRINTABLE_LAST: Final = 0x7E
_B64_ALPHABET: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
)


def _is_direct(code_point: int) -> bool:
    return _PRINTABLE_FIRST <= code_point <= _PRINTABLE_LAST


def encode_mailbox_name(name: str) -> str:
    """Encode a Unicode mailbox name as modified UTF-7 (pure ASCII).

    Raises:
        ParseError: the name holds a lone surrogate, which has no UTF-16 form.
    """
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if not pending:
            return
        try:
            raw = "".join(pending).encode("utf-16-be")
        except UnicodeEncodeError as exc:
            raise ParseError("mailbox name holds a lone surrogate") from exc
        b64 = binascii.b2a_base64(raw, newline=False).rstrip(b"=").replace(b"/", b",")
        out.append("&" + b64.decode("ascii") + "-")
        pending.clear()

    for char in name:
        if _is_direct(ord(char)):
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def _decode_segment(segment: str, *, strict: bool) -> str:
    if strict:
        if any(ord(c) not in _B64_ALPHABET for c in segment):
            raise ParseError("mailbox name has a character outside modified BASE64")
        bits = len(segment) * 6
        if bits % 16 >= 6:
            raise ParseError("mailbox name has a truncated modified BASE64 run")
    padded = segment.replace(",", "/") + "=" * (-len(segment) % 4)
    try:
        raw = binascii.a2b_base64(padded.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ParseError("mailbox name has broken modified BASE64") from exc
    if len(raw) % 2:
        raise ParseError("mailbox name has an odd number of UTF-16 bytes")
    # Non-zero padding bits would give a second spelling of the same name.
    if strict and binascii.b2a_base64(raw, newline=False).rstrip(b"=").replace(b"/", b",") != (
        segment.encode("ascii")
    ):
        raise ParseError("mailbox name has non-zero BASE64 padding bits")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise ParseError("mailbox name has an unpaired UTF-16 surrogate") from exc
    if strict and any(_is_direct(ord(c)) for c in text):
        raise ParseError("mailbox name encodes printable ASCII in BASE64")
    return text


def decode_mailbox_name(encoded: str, *, strict: bool = True) -> str:
    """Decode a modified UTF-7 mailbox name to Unicode.

    `strict` (the default) accepts only the canonical encoding; without it, characters
    outside printable ASCII pass through, two runs may touch, and a run's padding bits
    and content are not checked for canonical form.

    Raises:
        ParseError: an unterminated ``&`` run, broken BASE64, an odd UTF-16 length or an
            unpaired surrogate; when strict also a character outside printable ASCII, two
            adjacent runs, a truncated run, non-zero padding bits, or printable ASCII
            hidden in BASE64.
    """
    out: list[str] = []
    pos = 0
    length = len(encoded)
    last_was_run = False
    while pos < length:
        char = encoded[pos]
        if strict and not _is_direct(ord(char)):
            raise ParseError("mailbox name has a character outside printable ASCII")
        if char != "&":
            out.append(char)
            pos += 1
            last_was_run = False
            continue
        end = encoded.find("-", pos + 1)
        if end < 0:
            raise ParseError("mailbox name has an unterminated '&' run")
        if end == pos + 1:
            out.append("&")
            last_was_run = False
        else:
            if strict and last_was_run:
                raise ParseError("mailbox name has two adjacent BASE64 runs")
            out.append(_decode_segment(encoded[pos + 1 : end], strict=strict))
            last_was_run = True
        pos = end + 1
    return "".join(out)
