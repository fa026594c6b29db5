"""POP3 on the wire, pure (no I/O): framing client lines, parsing commands, and writing
messages as RFC 1939 sends them (CRLF line ends, dot-stuffed, ended by a lone dot).

Messages are stored as they arrived, which is CRLF for everything delivered through
Postfix or imported from Dovecot (import turns Maildir's bare LF into CRLF); a bare LF
that remains is sent as CRLF, so a size counts the normalised bytes (`crlf_size`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

MAX_LINE: Final = 1024
"""Longest client line, CRLF included. RFC 2449 caps a command at 255 octets; SASL
responses (AUTH PLAIN with a long address and app password) may be longer."""
MAX_ARGS: Final = 2
TERMINATOR: Final = b".\r\n"


class TooLong:
    """A client line over MAX_LINE; its bytes are skipped up to its end."""


TOO_LONG: Final = TooLong()


class LineReader:
    """Frames the byte stream into lines (CRLF, or a bare LF), each at most MAX_LINE."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skipping = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as a line."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_line(self) -> bytes | TooLong | None:
        """The next complete line without its line end; TOO_LONG once for a line over
        the limit (when its end arrives); None when more bytes are needed."""
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) >= MAX_LINE:
                # Nothing of it will be used: keep no more than the limit in memory.
                self._buffer.clear()
                self._skipping = True
            return None
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        if self._skipping or end + 1 > MAX_LINE:
            self._skipping = False
            return TOO_LONG
        return raw[:-1] if raw.endswith(b"\r") else raw


class CommandError(Exception):
    """A line that is no POP3 command; its text is the -ERR answer."""


@dataclass(frozen=True)
class Command:
    """One client command: its keyword, upper-cased, and its arguments."""

    verb: str
    args: tuple[str, ...]

    def __repr__(self) -> str:
        # PASS and AUTH carry secrets: never let them reach a log through a repr.
        return f"Command({self.verb}, {len(self.args)} args)"


def parse_command(line: bytes) -> Command:
    """Keyword and arguments separated by single spaces (RFC 1939 section 3); CommandError
    for anything else. PASS keeps the rest of its line as one argument, spaces and all,
    as clients send passwords with spaces."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("Invalid characters in the command.") from None
    if not text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise CommandError("Unknown command.")
    verb, _, rest = text.partition(" ")
    if not verb.isascii() or not verb.isalpha() or len(verb) > 4:
        raise CommandError("Unknown command.")
    verb = verb.upper()
    if verb == "PASS":
        return Command(verb, (rest,) if rest else ())
    args = tuple(rest.split(" ")) if rest else ()
    if len(args) > MAX_ARGS or any(not a for a in args):
        raise CommandError("Invalid arguments.")
    return Command(verb, args)


def ok(text: str) -> bytes:
    return b"+OK " + text.encode() + b"\r\n"


def err(text: str, code: str | None = None) -> bytes:
    """An -ERR line, with an RFC 2449 / RFC 3206 response code when given."""
    prefix = f"[{code}] " if code else ""
    return b"-ERR " + prefix.encode() + text.encode() + b"\r\n"


def multiline(first: bytes, lines: Iterable[str]) -> bytes:
    """A +OK line, then lines (none begins with a dot here), then the terminator."""
    return first + b"".join(line.encode() + b"\r\n" for line in lines) + TERMINATOR


class CrlfNormalizer:
    """Turns every LF not preceded by CR into CRLF, across pieces; a CRLF is never split
    between two outputs (a trailing CR waits for the next piece)."""

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, piece: bytes) -> bytes:
        data = self._carry + piece
        self._carry = b""
        if data.endswith(b"\r"):
            data, self._carry = data[:-1], b"\r"
        if b"\n" not in data:
            return data
        return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    def finish(self) -> bytes:
        data, self._carry = self._carry, b""
        return data


def crlf_size(pieces: Iterable[bytes]) -> int:
    """The size of a message as POP3 sends it: CRLF line ends, no dot-stuffing."""
    normalizer = CrlfNormalizer()
    size = sum(len(normalizer.feed(p)) for p in pieces)
    return size + len(normalizer.finish())


class MessageWriter:
    """A message as RETR and TOP send it: CRLF line ends, a dot doubled at the start of a
    line, a CRLF added if the message does not end with one, and the lone dot.

    With `body_lines` (TOP), the header, the blank line and that many body lines only;
    `done` tells when the rest of the message need not be read.
    """

    def __init__(self, body_lines: int | None = None) -> None:
        self._normalizer = CrlfNormalizer()
        self._line_start = True
        self._body_lines = body_lines
        self._in_body = False
        self._partial = bytearray()  # TOP: the line being assembled
        self.done = False

    def feed(self, piece: bytes) -> bytes:
        data = self._normalizer.feed(piece)
        if self._body_lines is None:
            return self._stuff(data)
        return self._lines(data)

    def finish(self) -> bytes:
        tail = self._stuff_or_line(self._normalizer.finish())
        if self._partial and not self.done:
            tail += self._stuff(bytes(self._partial))
            self._partial.clear()
        if not self._line_start:
            tail += b"\r\n"
        return tail + TERMINATOR

    def _stuff_or_line(self, data: bytes) -> bytes:
        if self._body_lines is None:
            return self._stuff(data)
        return self._lines(data)

    def _stuff(self, data: bytes) -> bytes:
        if not data:
            return b""
        out = data.replace(b"\r\n.", b"\r\n..")
        if self._line_start and data.startswith(b"."):
            out = b"." + out
        self._line_start = data.endswith(b"\r\n")
        return out

    def _lines(self, data: bytes) -> bytes:
        if self.done:
            return b""
        self._partial += data
        out = bytearray()
        while not self.done:
            end = self._partial.find(b"\r\n")
            if end < 0:
                break
            line = bytes(self._partial[: end + 2])
            del self._partial[: end + 2]
            if self._in_body:
                assert self._body_lines is not None  # noqa: S101 - only in TOP mode
                if self._body_lines <= 0:
                    self.done = True
                    break
                self._body_lines -= 1
            elif line == b"\r\n":
                self._in_body = True
            out += self._stuff(line)
            if self._in_body and self._body_lines == 0:
                self.done = True
        return bytes(out)
