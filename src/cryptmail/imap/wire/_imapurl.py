"""IMAP URLs (RFC 5092) as CATENATE (RFC 4469) names a message or a part of one.

Accepted: ``imap://[user[;AUTH=mech]@]host[:port]/mailbox[;UIDVALIDITY=n]/;UID=n
[/;SECTION=s][/;PARTIAL=o[.l]]`` and the same from the ``/mailbox`` on (a URL relative
to this server). The mailbox name is UTF-8, percent-encoded; so is the section. A URL
with URLAUTH (RFC 4467), or anything else, is refused with :class:`BadUrl` unless
the caller asks for URLAUTH: then an absolute URL may end in
``[;EXPIRE=date-time];URLAUTH=access[:mechanism:token]`` (RFC 5092 ``iurlauth``), and
:attr:`ImapUrl.auth` holds those parts.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote_to_bytes

from cryptmail.errors import ParseError
from cryptmail.imap.wire._lexer import Cursor, Frame
from cryptmail.imap.wire._parser_fetch import parse_section
from cryptmail.imap.wire._requests import Section

__all__ = ["BadUrl", "ImapUrl", "UrlAuth", "parse_imap_url"]

_MAX_URL: Final = 4096
_PATH: Final = re.compile(
    r"(?P<mailbox>[^;/][^;]*?)(?:;UIDVALIDITY=(?P<uidvalidity>[1-9][0-9]{0,9}))?"
    r"/;UID=(?P<uid>[1-9][0-9]{0,9})"
    r"(?:/;SECTION=(?P<section>[^/;]+))?"
    r"(?:/;PARTIAL=(?P<offset>[0-9]{1,10})(?:\.(?P<length>[1-9][0-9]{0,9}))?)?",
    re.IGNORECASE,
)
_AUTH: Final = re.compile(
    r"(?P<base>.*?)(?:;EXPIRE=(?P<expire>[0-9T:.+\-Z]{1,40}))?;URLAUTH=(?P<access>[^:;/]{1,400})"
    r"(?::(?P<mechanism>[A-Za-z0-9.\-]{1,64}):(?P<token>[0-9A-Fa-f]{1,512}))?",
    re.IGNORECASE | re.DOTALL,
)
_ACCESS: Final = re.compile(
    r"(?P<kind>submit|user)\+(?P<name>.+)|authuser|anonymous", re.IGNORECASE
)


class BadUrl(ValueError):
    """Not an IMAP URL to a message that CATENATE can take."""


@dataclass(frozen=True, slots=True)
class UrlAuth:
    """The URLAUTH parts of a URL: ``access`` lower-cased (``authuser``, ``anonymous``,
    ``user+name``, ``submit+name`` with the name decoded); ``mechanism`` upper-cased and
    ``token`` (hex, as sent) are None in a URL rump (GENURLAUTH's argument)."""

    access: str
    expire: dt.datetime | None
    mechanism: str | None
    token: str | None

    @property
    def rump(self) -> bool:
        return self.token is None


@dataclass(frozen=True, slots=True)
class ImapUrl:
    """What a URL names: ``user`` is None for a server-relative URL."""

    user: str | None
    mailbox: str
    uidvalidity: int | None
    uid: int
    section: Section
    partial: tuple[int, int] | None
    auth: UrlAuth | None = None


def _decode(text: str, what: str) -> str:
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise BadUrl(f"the {what} is not UTF-8") from None


def _expire(text: str) -> dt.datetime:
    """RFC 3339 date-time, with a zone, as UTC without tzinfo (as the database keeps it)."""
    try:
        value = dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise BadUrl("invalid EXPIRE") from None
    if value.tzinfo is None or "T" not in text.upper():
        raise BadUrl("invalid EXPIRE")
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _url_auth(found: re.Match[str]) -> UrlAuth:
    access = found.group("access")
    shape = _ACCESS.fullmatch(access)
    if shape is None:
        raise BadUrl("unknown URLAUTH access identifier")
    if shape.group("kind"):
        name = _decode(shape.group("name"), "access identifier")
        access = shape.group("kind").lower() + "+" + name.lower()
    else:
        access = access.lower()
    expire = found.group("expire")
    mechanism = found.group("mechanism")
    return UrlAuth(
        access,
        _expire(expire) if expire else None,
        mechanism.upper() if mechanism else None,
        found.group("token"),
    )


def parse_imap_url(url: str, *, urlauth: bool = False) -> ImapUrl:
    """The parts of `url`; BadUrl if it is not one CATENATE accepts (or, with `urlauth`,
    a URLAUTH URL or rump as RFC 4467 has them: absolute, with the user)."""
    if len(url) > _MAX_URL or not url.isascii():
        raise BadUrl("not an IMAP URL")
    user: str | None = None
    if url[:7].lower() == "imap://":
        authority, slash, path = url[7:].partition("/")
        # The last "@" ends the user part: lenient to a client that left "@" unescaped.
        userinfo, _at, host = authority.rpartition("@")
        if not slash or not host:
            raise BadUrl("not an IMAP URL")
        if userinfo:
            name = re.split(";auth=", userinfo, maxsplit=1, flags=re.IGNORECASE)[0]
            user = _decode(name, "user name") if name else None
    elif url.startswith("/") and not url.startswith("//"):
        path = url[1:]
    else:
        raise BadUrl("not an IMAP URL")
    auth: UrlAuth | None = None
    if urlauth:
        marked = _AUTH.fullmatch(path)
        if marked is None or user is None:
            raise BadUrl("not a URLAUTH URL")
        auth = _url_auth(marked)
        path = marked.group("base")
    if re.search(r";(URLAUTH|EXPIRE)=", path, re.IGNORECASE):
        raise BadUrl("URLAUTH is not supported")
    found = _PATH.fullmatch(path)
    if found is None:
        raise BadUrl("the URL names no message by UID")
    mailbox = _decode(found.group("mailbox"), "mailbox name")
    if mailbox.upper() == "INBOX":
        mailbox = "INBOX"
    section = Section()
    if found.group("section"):
        raw = unquote_to_bytes(found.group("section"))
        cur = Cursor(Frame([b"[" + raw + b"]"]))
        try:
            section = parse_section(cur)
            cur.expect_end()
        except ParseError:
            raise BadUrl("invalid section") from None
    partial = None
    if found.group("offset") is not None:
        length = found.group("length")
        partial = (int(found.group("offset")), int(length) if length else 2**32)
    uidvalidity = found.group("uidvalidity")
    return ImapUrl(
        user, mailbox, int(uidvalidity) if uidvalidity else None, int(found.group("uid")),
        section, partial, auth,
    )  # fmt: skip
