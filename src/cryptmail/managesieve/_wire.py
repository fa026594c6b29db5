"""ManageSieve on the wire, pure (no I/O): splitting a command line into its words and
writing responses (RFC 5804 section 4).

A command is an atom (its name) followed by strings and numbers separated by single
spaces. A string is quoted (`"..."` with `\\"` and `\\\\` escapes, no CR or LF, at most
1024 octets) or a literal: `{n+}` or `{n}` at the end of a line, then exactly n octets,
then the command goes on. Clients send `{n+}` (no wait); `{n}` is taken the same way, as
Dovecot does, since the protocol has no continuation for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

MAX_LINE: Final = 8192
"""Longest line of a command (a part between literals), CRLF included."""
MAX_QUOTED: Final = 1024
"""Longest quoted string (RFC 5804 section 4)."""
MAX_WORDS: Final = 8
"""More words than any command takes: a longer command is refused."""

_LITERAL_AT_END: Final = re.compile(rb"\{([0-9]{1,10})(\+?)\}$")
_ATOM: Final = re.compile(rb"[A-Za-z]{1,32}")
_NUMBER: Final = re.compile(rb"[0-9]{1,10}")


class WireError(Exception):
    """A line that is no ManageSieve command; the text is the NO answer's."""


@dataclass(frozen=True)
class Literal:
    """The end of a line announcing a literal of `size` octets."""

    size: int


@dataclass(frozen=True)
class Number:
    """A number argument (HAVESPACE's size)."""

    value: int


Word = str | bytes | Number
"""A command's name (str, upper-cased), a string (bytes, as sent) or a number."""


def parse_line(line: bytes, *, first: bool) -> tuple[list[Word], Literal | None]:
    """The words of one line (without CRLF), and the literal announced at its end if
    any (its octets come next, then the rest of the command). `first` is True for a
    command's first line, which starts with the command name. Raises WireError."""
    words: list[Word] = []
    literal: Literal | None = None
    match = _LITERAL_AT_END.search(line)
    if match is not None:
        literal = Literal(int(match[1]))
        line = line[: match.start()]
        if not line.endswith(b" "):
            raise WireError("A literal must follow a space.")
        line = line[:-1]
    pos = 0
    if first:
        atom = _ATOM.match(line)
        if atom is None:
            raise WireError("Expected a command name.")
        words.append(atom[0].decode("ascii").upper())
        pos = atom.end()
    while pos < len(line):
        if line[pos : pos + 1] != b" " or pos + 1 >= len(line):
            raise WireError("Arguments are separated by single spaces.")
        pos += 1
        if line[pos : pos + 1] == b'"':
            value, pos = _quoted(line, pos)
            words.append(value)
            continue
        number = _NUMBER.match(line, pos)
        if number is None:
            raise WireError("Expected a quoted string, a literal or a number.")
        words.append(Number(int(number[0])))
        pos = number.end()
    if len(words) > MAX_WORDS:
        raise WireError("Too many arguments.")
    return words, literal


def trailing_literal(line: bytes) -> int | None:
    """The size of the literal announced at the end of `line`, if any: the octets that
    follow belong to the command even when the line itself cannot be parsed."""
    match = _LITERAL_AT_END.search(line)
    return None if match is None else int(match[1])


def _quoted(line: bytes, pos: int) -> tuple[bytes, int]:
    """The quoted string starting at line[pos] ('"'), and the position after it."""
    out = bytearray()
    pos += 1
    while pos < len(line):
        char = line[pos : pos + 1]
        if char == b'"':
            if len(out) > MAX_QUOTED:
                raise WireError("A quoted string is at most 1024 octets; use a literal.")
            return bytes(out), pos + 1
        if char == b"\\":
            following = line[pos + 1 : pos + 2]
            if following not in (b'"', b"\\"):
                raise WireError('Only \\" and \\\\ may be escaped in a quoted string.')
            out += following
            pos += 2
            continue
        if char in (b"\r", b"\n", b"\x00"):
            raise WireError("A quoted string may not hold CR, LF or NUL.")
        out += char
        pos += 1
    raise WireError("A quoted string is not closed.")


def quote(value: str | bytes) -> bytes:
    """`value` as a string a client reads: quoted when short and free of CR, LF and
    NUL, else a literal."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) <= MAX_QUOTED and not any(c in data for c in b"\r\n\x00"):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def literal(data: bytes) -> bytes:
    """`data` as a server-to-client literal (`{n}` CRLF data)."""
    return b"{%d}\r\n" % len(data) + data


def response(status: str, text: str | None = None, code: str | None = None) -> bytes:
    """An OK, NO or BYE line: `status [(code)] ["text"]` (RFC 5804 section 4)."""
    out = status.encode("ascii")
    if code:
        out += b" (" + code.encode("utf-8") + b")"
    if text is not None:
        out += b" " + quote(text)
    return out + b"\r\n"


def ok(text: str | None = None, code: str | None = None) -> bytes:
    return response("OK", text, code)


def no(text: str, code: str | None = None) -> bytes:
    return response("NO", text, code)


def bye(text: str, code: str | None = None) -> bytes:
    return response("BYE", text, code)


def capability_lines(items: Iterable[tuple[str, str | None]]) -> bytes:
    """The capability response's lines (each `"NAME" ["value"]`), without the OK."""
    out = bytearray()
    for name, value in items:
        out += quote(name)
        if value is not None:
            out += b" " + quote(value)
        out += b"\r\n"
    return bytes(out)
