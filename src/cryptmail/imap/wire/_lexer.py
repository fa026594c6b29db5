"""A cursor over one framed IMAP command: line pieces joined by literals.

The reader cuts the byte stream into :class:`Frame` objects (``lines[i]`` ends with a
``{n}`` marker whose payload is ``literals[i]``); the parser walks a frame with
:class:`Cursor`, whose methods follow the RFC 3501 formal syntax and raise
:class:`~cryptmail.errors.ParseError` on anything else. Every method consumes input
left to right, so parsing is linear in the command size.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Final

from cryptmail.errors import ParseError

__all__ = ["Cursor", "Frame", "PendingLiteral", "StreamedLiteral"]

_CTL: Final = frozenset(range(0x00, 0x20)) | {0x7F}
_ATOM_SPECIALS: Final = frozenset(b'(){ %*"\\]') | _CTL
ATOM_CHARS: Final = frozenset(c for c in range(0x01, 0x80) if c not in _ATOM_SPECIALS)
_ASTRING_7BIT: Final = ATOM_CHARS | {ord("]")}
ASTRING_CHARS: Final = _ASTRING_7BIT | frozenset(range(0x80, 0x100))
"""Bytes of an unquoted astring; 8-bit is tolerated there, as Dovecot does."""
TAG_CHARS: Final = _ASTRING_7BIT - {ord("+")}
LIST_CHARS: Final = ATOM_CHARS | frozenset(b"%*]")
_DIGITS: Final = frozenset(b"0123456789")
MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                 "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")  # fmt: skip
MAX_NUMBER: Final = 0xFFFFFFFF
MAX_MODSEQ: Final = 0x7FFFFFFFFFFFFFFF


@dataclass(frozen=True, slots=True)
class StreamedLiteral:
    """Stands for a literal that the reader handed to the server in chunks."""

    size: int


class PendingLiteral(Exception):  # a control-flow signal, not an error
    """The cursor reached a literal whose bytes have not arrived (prefix parsing)."""


@dataclass(slots=True)
class Frame:
    """One command: ``lines`` (no CRLF) interleaved with ``literals``.

    A complete frame has one more line than literals; a frame still waiting for the
    payload of its last announced literal has as many lines as literals plus one,
    the last line ending in the announcement.
    """

    lines: list[bytes] = field(default_factory=list)
    literals: list[bytes | StreamedLiteral] = field(default_factory=list)


class Cursor:
    """Reads tokens from a :class:`Frame`; ``tag`` is filled in as soon as it is read."""

    __slots__ = ("_frame", "_line", "_pos", "_seg", "tag", "utf8")

    def __init__(self, frame: Frame, segment: int = 0, *, utf8: bool = False) -> None:
        self.utf8 = utf8
        """Mailbox names are UTF-8 (RFC 6855 UTF8=ACCEPT enabled), not modified UTF-7."""
        self._frame = frame
        self._seg = segment
        self._line = frame.lines[segment] if frame.lines else b""
        self._pos = 0
        self.tag: str | None = None

    # -- primitives -------------------------------------------------------------

    def fail(self, reason: str) -> ParseError:
        return ParseError(reason, self.tag)

    def peek(self) -> int:
        """The next byte of the current line, or -1 at its end."""
        return self._line[self._pos] if self._pos < len(self._line) else -1

    def at_end(self) -> bool:
        """True at the end of the whole command."""
        return self._pos >= len(self._line) and self._seg == len(self._frame.lines) - 1

    def lookahead(self, count: int) -> bytes:
        """Up to ``count`` bytes from the cursor, within the current line."""
        return self._line[self._pos : self._pos + count]

    def expect_end(self) -> None:
        if not self.at_end():
            raise self.fail("Unexpected extra arguments")

    def expect_byte(self, char: bytes, what: str) -> None:
        if self.peek() != char[0]:
            raise self.fail(f"Expected {what}")
        self._pos += 1

    def skip_byte(self, char: bytes) -> bool:
        if self.peek() == char[0]:
            self._pos += 1
            return True
        return False

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise self.fail("Missing argument" if self.at_end() else "Expected a space")
        self._pos += 1

    def _run(self, allowed: frozenset[int]) -> bytes:
        line = self._line
        start = pos = self._pos
        end = len(line)
        while pos < end and line[pos] in allowed:
            pos += 1
        self._pos = pos
        return line[start:pos]

    # -- atoms and numbers -------------------------------------------------------

    def atom(self, what: str = "an atom") -> str:
        value = self._run(ATOM_CHARS)
        if not value:
            raise self.fail(f"Expected {what}")
        return value.decode("ascii")

    def tag_token(self) -> str:
        value = self._run(TAG_CHARS)
        if not value:
            raise ParseError("Missing or invalid tag")
        self.tag = value.decode("ascii")
        return self.tag

    def word(self, allowed: frozenset[int], what: str) -> str:
        value = self._run(allowed)
        if not value:
            raise self.fail(f"Expected {what}")
        return value.decode("ascii")

    def number(self, *, nonzero: bool = False, limit: int = MAX_NUMBER) -> int:
        digits = self._run(_DIGITS)
        if not digits:
            raise self.fail("Expected a number")
        if len(digits) > 20 or int(digits) > limit:
            raise self.fail("Number out of range")
        value = int(digits)
        if nonzero and value == 0:
            raise self.fail("Expected a non-zero number")
        return value

    def digits(self) -> bytes:
        return self._run(_DIGITS)

    # -- strings ------------------------------------------------------------------

    def _quoted(self) -> bytes:
        line = self._line
        pos = self._pos + 1
        out = bytearray()
        end = len(line)
        while pos < end:
            char = line[pos]
            if char == 0x22:
                self._pos = pos + 1
                return bytes(out)
            if char == 0x5C:
                pos += 1
                if pos >= end or line[pos] not in (0x22, 0x5C):
                    raise self.fail("Invalid escape in quoted string")
                char = line[pos]
            elif char == 0:
                raise self.fail("NUL in quoted string")
            out.append(char)
            pos += 1
        raise self.fail("Unterminated quoted string")

    def literal_marker(self) -> tuple[int, bool]:
        """Read ``{n}`` or ``{n+}`` that ends the line; returns (size, synchronizing)."""
        self.expect_byte(b"{", "a literal")
        digits = self.digits()
        if not digits or len(digits) > 20:
            raise self.fail("Invalid literal size")
        non_sync = self.skip_byte(b"+")
        self.expect_byte(b"}", "'}' after the literal size")
        if self._pos != len(self._line):
            raise self.fail("Literal size must end the line")
        return int(digits), not non_sync

    def _literal(self) -> bytes | StreamedLiteral:
        self.literal_marker()
        if self._seg >= len(self._frame.literals):
            raise PendingLiteral
        payload = self._frame.literals[self._seg]
        self._seg += 1
        self._line = self._frame.lines[self._seg]
        self._pos = 0
        return payload

    def literal_payload(self) -> bytes | StreamedLiteral:
        """A literal that may have been streamed (the APPEND message)."""
        return self._literal()

    def at_pending_literal(self) -> bool:
        """True when the cursor's line is the last one and ends in a literal marker
        whose payload has not arrived: used to spot the APPEND message literal."""
        return self._seg == len(self._frame.lines) - 1 and self._seg == len(self._frame.literals)

    def string(self) -> bytes:
        char = self.peek()
        if char == 0x22:
            return self._quoted()
        if char == 0x7B:
            payload = self._literal()
            if isinstance(payload, StreamedLiteral):
                raise self.fail("Unexpected message literal")
            return payload
        raise self.fail("Expected a string")

    def astring(self) -> bytes:
        char = self.peek()
        if char in (0x22, 0x7B):
            return self.string()
        value = self._run(ASTRING_CHARS)
        if not value:
            raise self.fail("Expected a string or atom")
        return value

    def nstring(self) -> bytes | None:
        if self.peek() in (0x4E, 0x6E) and self._line[self._pos : self._pos + 3].upper() == b"NIL":
            after = self._pos + 3
            if after >= len(self._line) or self._line[after] not in ATOM_CHARS:
                self._pos = after
                return None
        return self.string()

    def list_mailbox(self) -> bytes:
        char = self.peek()
        if char in (0x22, 0x7B):
            return self.string()
        value = self._run(LIST_CHARS)
        if not value:
            raise self.fail("Expected a mailbox pattern")
        return value

    # -- dates ----------------------------------------------------------------------

    def date(self) -> dt.date:
        """``date`` of SEARCH: ``1-Feb-2024`` or the same in double quotes."""
        quoted = self.skip_byte(b'"')
        day = self.digits()
        self.expect_byte(b"-", "a date")
        month = self._run(frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
        self.expect_byte(b"-", "a date")
        year = self.digits()
        if quoted:
            self.expect_byte(b'"', "a closing quote")
        return self._make_date(day, month, year)

    def _make_date(self, day: bytes, month: bytes, year: bytes) -> dt.date:
        name = month.decode("ascii", "replace").upper()
        if not 1 <= len(day) <= 2 or len(year) != 4 or name not in MONTHS:
            raise self.fail("Invalid date")
        try:
            return dt.date(int(year), MONTHS.index(name) + 1, int(day))
        except ValueError as exc:
            raise self.fail("Invalid date") from exc

    def date_time(self) -> dt.datetime:
        """``date-time``: ``"dd-Mon-yyyy hh:mm:ss +zzzz"`` (day may be space-padded)."""
        if self.peek() != 0x22:
            raise self.fail("Expected a date-time")
        raw = self._quoted()
        if len(raw) != 26:
            raise self.fail("Invalid date-time")
        day = raw[0:2].lstrip(b" ")
        if raw[2:3] != b"-" or raw[6:7] != b"-" or raw[11:12] != b" ":
            raise self.fail("Invalid date-time")
        date = self._make_date(day, raw[3:6], raw[7:11])
        clock, zone = raw[12:20], raw[21:26]
        if raw[20:21] != b" " or clock[2:3] != b":" or clock[5:6] != b":":
            raise self.fail("Invalid date-time")
        fields = (clock[0:2], clock[3:5], clock[6:8], zone[1:3], zone[3:5])
        if zone[0:1] not in (b"+", b"-") or not all(f.isdigit() for f in fields):
            raise self.fail("Invalid date-time")
        hour, minute, second, zone_h, zone_m = (int(f) for f in fields)
        if hour > 23 or minute > 59 or second > 60 or zone_m > 59:
            raise self.fail("Invalid date-time")
        offset = dt.timedelta(hours=zone_h, minutes=zone_m)
        if zone[0:1] == b"-":
            offset = -offset
        return dt.datetime(
            date.year, date.month, date.day, hour, minute, min(second, 59),
            tzinfo=dt.timezone(offset),
        )  # fmt: skip

    # -- flags ----------------------------------------------------------------------

    def flag(self) -> str:
        if self.skip_byte(b"\\"):
            name = self.atom("a flag name")
            return "\\" + _SYSTEM_FLAGS.get(name.upper(), name)
        return self.atom("a flag")

    def flag_list(self) -> tuple[str, ...]:
        self.expect_byte(b"(", "'('")
        flags: list[str] = []
        if not self.skip_byte(b")"):
            while True:
                flags.append(self.flag())
                if self.skip_byte(b")"):
                    break
                self.sp()
        return tuple(flags)


_SYSTEM_FLAGS: Final = {
    "ANSWERED": "Answered",
    "FLAGGED": "Flagged",
    "DELETED": "Deleted",
    "SEEN": "Seen",
    "DRAFT": "Draft",
    "RECENT": "Recent",
}
