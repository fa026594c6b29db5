"""Writing IMAP responses: strings, lists, response codes, status lines, FETCH data.

Strings follow Dovecot's choices so that our bytes match its bytes: a quoted string
unless the value holds CR, LF, 8-bit bytes or more than four quoted-specials, in
which case a literal. :class:`FetchResponse` builds one ``* n FETCH (...)`` line
and leaves :class:`LiteralSlot` holes where the server streams large bodies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "Atom",
    "FetchResponse",
    "ImapValue",
    "LiteralSlot",
    "Raw",
    "append_astring",
    "append_human_string",
    "append_nstring",
    "append_nstring_nolf",
    "append_value",
    "continuation",
    "format_date_time",
    "response_code",
    "tagged",
    "untagged",
]

_QUOTED_MAX_ESCAPES: Final = 4
_ASTRING_SAFE: Final = frozenset(
    c for c in range(0x21, 0x7F) if c not in b'(){%*"\\'
)  # atom chars plus ']'
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Atom:
    """Written as is: NIL, flags, keywords, capability names, mailbox attributes."""

    text: str


@dataclass(frozen=True, slots=True)
class Raw:
    """Bytes already in IMAP syntax (a cached BODYSTRUCTURE or ENVELOPE)."""

    data: bytes


ImapValue = (
    None | int | str | bytes | Atom | Raw | Sequence["ImapValue"]
)  # str is UTF-8 encoded first


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _append_literal(out: bytearray, value: bytes, *, literal8: bool = False) -> None:
    out += b"~{%d}\r\n" % len(value) if literal8 else b"{%d}\r\n" % len(value)
    out += value


def append_nstring(out: bytearray, value: str | bytes | None) -> None:
    """NIL, a quoted string, or a literal when quoting would not do (Dovecot's rule)."""
    if value is None:
        out += b"NIL"
        return
    data = _as_bytes(value)
    escapes = 0
    for char in data:
        if char in (0x22, 0x5C):
            escapes += 1
            if escapes > _QUOTED_MAX_ESCAPES:
                _append_literal(out, data)
                return
        elif char in (0x0D, 0x0A) or char >= 0x80 or char == 0:
            _append_literal(out, data)
            return
    out.append(0x22)
    out += data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    out.append(0x22)


def append_nstring_nolf(out: bytearray, value: bytes | None) -> None:
    """Like :func:`append_nstring` after dropping CR and LF (header values)."""
    if value is not None and (b"\r" in value or b"\n" in value):
        value = value.replace(b"\r", b"").replace(b"\n", b"")
    append_nstring(out, value)


def append_astring(out: bytearray, value: str | bytes) -> None:
    """An atom when every byte allows it (and it is not NIL), else a string."""
    data = _as_bytes(value)
    if data and all(c in _ASTRING_SAFE for c in data) and data.upper() != b"NIL":
        out += data
    else:
        append_nstring(out, data)


def append_human_string(out: bytearray, value: bytes) -> None:
    """A subject or display name: whitespace runs become one space, ends trimmed.

    Dovecot sends such text as a literal whenever it changed anything or met a
    quote, backslash or 8-bit byte; NUL becomes 0x80.
    """
    modify = False
    last_lwsp = True
    only_space_so_far = True
    for char in value:
        if char == 0:
            last_lwsp = False
            modify = True
        elif char in (0x0D, 0x0A, 0x09, 0x20):
            if char != 0x20 or last_lwsp:
                modify = True
            last_lwsp = True
        else:
            if char in (0x22, 0x5C) or char >= 0x80:
                modify = True
            last_lwsp = False
        if not last_lwsp:
            only_space_so_far = False
    if last_lwsp and value and not only_space_so_far:
        modify = True
    if not modify:
        out.append(0x22)
        out += value
        out.append(0x22)
        return
    text = bytearray()
    last_lwsp = True
    for char in value:
        if char == 0:
            text.append(0x80)
            last_lwsp = False
        elif char in (0x0D, 0x0A, 0x09, 0x20):
            if not last_lwsp:
                text.append(0x20)
            last_lwsp = True
        else:
            text.append(char)
            last_lwsp = False
    if text.endswith(b" "):
        del text[-1]
    if not text:
        out += b'""'
        return
    _append_literal(out, bytes(text))


def append_value(out: bytearray, value: ImapValue) -> None:
    """Serialise any :data:`ImapValue` (lists recurse, str is UTF-8)."""
    if value is None:
        out += b"NIL"
    elif isinstance(value, bool):
        raise TypeError("booleans have no IMAP form")
    elif isinstance(value, int):
        out += b"%d" % value
    elif isinstance(value, Atom):
        out += value.text.encode("ascii")
    elif isinstance(value, Raw):
        out += value.data
    elif isinstance(value, (str, bytes)):
        append_nstring(out, value)
    else:
        out.append(0x28)
        for index, item in enumerate(value):
            if index:
                out.append(0x20)
            append_value(out, item)
        out.append(0x29)


def _line(parts: Iterable[ImapValue]) -> bytearray:
    out = bytearray()
    for index, part in enumerate(parts):
        if index:
            out.append(0x20)
        append_value(out, part)
    return out


def response_code(name: str, *args: ImapValue) -> str:
    """``[NAME arg ...]`` for a status line; arguments written as IMAP values."""
    body = bytearray(name.encode("ascii"))
    for arg in args:
        body.append(0x20)
        append_value(body, arg)
    return "[" + body.decode("utf-8", "surrogateescape") + "]"


def _text(code: str | None, text: str) -> bytes:
    if "\r" in text or "\n" in text:
        raise ValueError("response text must be one line")
    joined = f"{code} {text}" if code else text
    return joined.encode("utf-8")


def untagged(*parts: ImapValue) -> bytes:
    """``* part part ...\\r\\n``, e.g. ``untagged(23, Atom("EXISTS"))``."""
    return b"* " + bytes(_line(parts)) + b"\r\n"


def tagged(
    tag: str,
    status: Literal["OK", "NO", "BAD"],
    text: str,
    code: str | None = None,
) -> bytes:
    """``tag OK [CODE] text\\r\\n``; ``code`` comes from :func:`response_code`."""
    return tag.encode("ascii") + b" " + status.encode() + b" " + _text(code, text) + b"\r\n"


def continuation(text: str = "Ready for literal data") -> bytes:
    return b"+ " + _text(None, text) + b"\r\n"


def format_date_time(stamp: dt.datetime) -> bytes:
    """INTERNALDATE: ``"05-Mar-2024 10:00:00 +0100"`` (naive means UTC)."""
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    offset = stamp.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    text = (
        f'"{stamp.day:02d}-{_MONTHS[stamp.month - 1]}-{stamp.year:04d} '
        f"{stamp.hour:02d}:{stamp.minute:02d}:{stamp.second:02d} "
        f'{sign}{minutes // 60:02d}{minutes % 60:02d}"'
    )
    return text.encode("ascii")


@dataclass(frozen=True, slots=True)
class LiteralSlot:
    """Where exactly ``size`` body bytes go; the ``{size}\\r\\n`` header precedes it."""

    key: str
    size: int


class FetchResponse:
    """One ``* n FETCH (...)`` response, built item by item.

    ``pieces()`` yields bytes to write and :class:`LiteralSlot` markers where the
    server copies the section's bytes (from its own chunked reader) before going on;
    so a 50 MB ``BODY[]`` is never assembled in memory.
    """

    def __init__(self, sequence: int) -> None:
        self._head = b"* %d FETCH (" % sequence
        self._items: list[bytes | LiteralSlot] = []
        self._pending = bytearray()

    def _sep(self) -> None:
        if self._pending or self._items:
            self._pending.append(0x20)

    def add(self, key: str, value: ImapValue) -> FetchResponse:
        """Add ``KEY value``; ``value`` may be :class:`Raw` for cached structures."""
        self._sep()
        self._pending += key.encode("ascii") + b" "
        append_value(self._pending, value)
        return self

    def add_literal(self, key: str, data: bytes | None, *, literal8: bool = False) -> FetchResponse:
        """Add a small section as ``KEY {n}\\r\\n...`` (or NIL); ``~{n}`` for a
        ``literal8`` (RFC 3516 BINARY)."""
        self._sep()
        self._pending += key.encode("ascii") + b" "
        if data is None:
            self._pending += b"NIL"
        else:
            _append_literal(self._pending, data, literal8=literal8)
        return self

    def add_streamed(self, key: str, size: int, *, literal8: bool = False) -> FetchResponse:
        """Add ``KEY {size}\\r\\n`` and leave a slot for ``size`` bytes from the server."""
        self._sep()
        marker = b" ~{%d}\r\n" if literal8 else b" {%d}\r\n"
        self._pending += key.encode("ascii") + marker % size
        self._items.append(bytes(self._pending))
        self._pending.clear()
        self._items.append(LiteralSlot(key, size))
        return self

    def pieces(self) -> Iterator[bytes | LiteralSlot]:
        """Bytes and slots in order; adjacent bytes are joined."""
        first = True
        for item in [*self._items, bytes(self._pending) + b")\r\n"]:
            if isinstance(item, LiteralSlot):
                yield item
                continue
            yield (self._head + item) if first else item
            first = False
        if first:  # pragma: no cover - the tail item always exists
            yield self._head + b")\r\n"

    def to_bytes(self) -> bytes:
        """The whole response; only for responses without slots.

        Raises:
            ValueError: a streamed slot is present.
        """
        out = bytearray()
        for piece in self.pieces():
            if isinstance(piece, LiteralSlot):
                raise ValueError("response has a streamed literal; write pieces() instead")
            out += piece
        return bytes(out)
