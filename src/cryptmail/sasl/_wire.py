"""The lines of Dovecot's auth protocol (client side, as Postfix speaks it).

One command per LF-terminated line, its parameters separated by TAB; a parameter's TAB,
CR, LF, NUL and \\001 are escaped with \\001 (`escape`, `unescape`). The server starts
with its handshake (`handshake`): VERSION, the mechanisms, SPID, CUID, COOKIE, DONE.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from typing import Final

VERSION_MAJOR: Final = 1
VERSION_MINOR: Final = 2
MAX_LINE: Final = 16384
"""Longest line read; Dovecot expects lines to fit in 16 KiB, and the largest thing in
them is one base64 SASL response."""

_ESCAPES: Final = {"0": "\x00", "1": "\x01", "t": "\t", "r": "\r", "n": "\n"}
_ESCAPED: Final = {value: "\x01" + key for key, value in _ESCAPES.items()}


class ProtocolError(ValueError):
    """A line that breaks the protocol; the connection is closed after it."""


def escape(value: str) -> str:
    return "".join(_ESCAPED.get(char, char) for char in value)


def unescape(value: str) -> str:
    if "\x01" not in value:
        return value
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\x01":
            following = next(chars, "")
            out.append(_ESCAPES.get(following, following))
        else:
            out.append(char)
    return "".join(out)


def parse_line(line: bytes) -> tuple[str, list[str]]:
    """(command, unescaped parameters). Raises ProtocolError."""
    try:
        text = line.rstrip(b"\n").decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("a line that is not UTF-8") from None
    command, *params = text.split("\t")
    if not command:
        raise ProtocolError("an empty command")
    return command, [unescape(p) for p in params]


def options(params: Iterable[str]) -> dict[str, str]:
    """Optional parameters: `name=value`, or a bare `name` (a flag, value "")."""
    found: dict[str, str] = {}
    for param in params:
        name, _, value = param.partition("=")
        found.setdefault(name, value)
    return found


def line(command: str, *params: str) -> bytes:
    return "\t".join((command, *(escape(p) for p in params))).encode("utf-8") + b"\n"


def handshake(mechanisms: Iterable[tuple[str, str]], connection_id: int) -> bytes:
    """What the server sends first: `mechanisms` as (name, flags) pairs."""
    out = [line("VERSION", str(VERSION_MAJOR), str(VERSION_MINOR))]
    out += [line("MECH", name, *flags.split()) for name, flags in mechanisms]
    out += [
        line("SPID", str(os.getpid())),
        line("CUID", str(connection_id)),
        # Only a master (userdb) client would use it: random, never checked here.
        line("COOKIE", secrets.token_hex(16)),
        line("DONE"),
    ]
    return b"".join(out)
