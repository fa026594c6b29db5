"""URLAUTH's commands (RFC 4467): GENURLAUTH, URLFETCH and RESETKEY, typed and parsed.

``GENURLAUTH url-rump SP mechanism *(SP url-rump SP mechanism)``, ``URLFETCH url *(SP
url)`` and ``RESETKEY [mailbox *(SP mechanism)]``. URLs are astrings taken as UTF-8
text; whether one is a valid URL is the handler's question (URLFETCH answers NIL for a
bad one, so the parser must not refuse the whole command for it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

from cryptmail.imap.wire._lexer import Cursor
from cryptmail.imap.wire._requests import Command

__all__ = [
    "MAX_URLS",
    "GenUrlAuth",
    "ResetKey",
    "UrlFetch",
    "parse_genurlauth",
    "parse_resetkey",
    "parse_urlfetch",
]

MAX_URLS: Final = 64
"""URLs in one GENURLAUTH or URLFETCH; more is BAD (a submission server asks for a few)."""


@dataclass(frozen=True, slots=True)
class GenUrlAuth(Command):
    """Pairs of (URL rump, mechanism name in upper case)."""

    name: ClassVar[str] = "GENURLAUTH"
    urls: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class UrlFetch(Command):
    name: ClassVar[str] = "URLFETCH"
    urls: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResetKey(Command):
    """``mailbox`` None: every URL of the user; ``mechanisms`` in upper case."""

    name: ClassVar[str] = "RESETKEY"
    mailbox: str | None
    mechanisms: tuple[str, ...]


def _url(cur: Cursor) -> str:
    raw = cur.astring()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Kept as an invalid URL: URLFETCH answers NIL for it, GENURLAUTH refuses it.
        return raw.decode("utf-8", "replace")


def parse_genurlauth(cur: Cursor, tag: str, _uid: bool) -> Command:
    urls: list[tuple[str, str]] = []
    while not cur.at_end() or not urls:
        cur.sp()
        url = _url(cur)
        cur.sp()
        urls.append((url, cur.atom("a URLAUTH mechanism").upper()))
        if len(urls) > MAX_URLS:
            raise cur.fail("Too many URLs")
    return GenUrlAuth(tag, tuple(urls))


def parse_urlfetch(cur: Cursor, tag: str, _uid: bool) -> Command:
    urls: list[str] = []
    while not cur.at_end() or not urls:
        cur.sp()
        urls.append(_url(cur))
        if len(urls) > MAX_URLS:
            raise cur.fail("Too many URLs")
    return UrlFetch(tag, tuple(urls))


def parse_resetkey(cur: Cursor, tag: str, sp_mailbox: Callable[[Cursor], str]) -> Command:
    """`sp_mailbox` reads `` SP mailbox`` as every other command does (the parser's)."""
    if cur.at_end():
        return ResetKey(tag, None, ())
    mailbox = sp_mailbox(cur)
    mechanisms: list[str] = []
    while not cur.at_end():
        cur.sp()
        mechanisms.append(cur.atom("a URLAUTH mechanism").upper())
        if len(mechanisms) > MAX_URLS:
            raise cur.fail("Too many mechanisms")
    return ResetKey(tag, mailbox, tuple(mechanisms))
