"""CATENATE (RFC 4469): an APPEND message made of TEXT literals and IMAP URLs.

A URL must name a message (or a part, or a partial range) in one of the logged-in
user's own mailboxes: a URL with another user's name, an unknown mailbox, a changed
UIDVALIDITY, a UID not there or a part that does not exist is refused with
``NO [BADURL "url"]`` before anything is written. A URL with URLAUTH (RFC 4467) is
checked as URLFETCH checks it (``imap.server._urlauth``): with a valid token for an
access identifier the user matches, it may name another user's message; any failure
is the same BADURL. Every URL is resolved first; then the parts are streamed in order
into the new blob (a referenced message is read piece by piece, as FETCH sends it),
and the whole may not pass APPENDLIMIT.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptmail.errors import MailboxNotFound
from cryptmail.imap.message._partmap import SectionPlan
from cryptmail.imap.server._errors import CommandFailed
from cryptmail.imap.server._fetch import MessageFetch
from cryptmail.imap.server._selected import SelectedMailbox
from cryptmail.imap.server._urlauth import GrantedPart, redeem
from cryptmail.imap.wire._imapurl import BadUrl, ImapUrl, parse_imap_url
from cryptmail.imap.wire._requests import CatenatePart
from cryptmail.imap.wire._response import append_nstring
from cryptmail.store import get_mailbox

if TYPE_CHECKING:
    from cryptmail.imap.server._session import Session


@dataclass(frozen=True)
class UrlPart:
    """A checked URL into one of the user's own mailboxes."""

    fetch: MessageFetch
    plan: SectionPlan
    partial: tuple[int, int] | None

    def pieces(self) -> AsyncIterator[bytes]:
        return self.fetch.section_pieces(self.plan, self.partial)


_URLAUTH = re.compile(";URLAUTH=", re.IGNORECASE)


def _bad_url(url: str, text: str) -> CommandFailed:
    code = bytearray(b"[BADURL ")
    append_nstring(code, url)
    return CommandFailed(text, code.decode("utf-8", "replace") + "]")


class Catenation:
    """The mailboxes one APPEND's URLs opened (read-only, loaded once each)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._opened: dict[int, SelectedMailbox] = {}

    def close(self) -> None:
        for selected in self._opened.values():
            selected.close()
        self._opened.clear()

    async def resolve(self, parts: tuple[CatenatePart, ...]) -> list[bytes | UrlPart | GrantedPart]:
        """Each part as TEXT bytes or a checked URL part; CommandFailed (BADURL) else."""
        return [
            part.text if part.text is not None else await self._url(part.url or "")
            for part in parts
        ]

    async def _url(self, raw: str) -> UrlPart | GrantedPart:
        if _URLAUTH.search(raw):
            granted = await redeem(self._session, raw)
            if granted is None:  # one answer for every reason, as URLFETCH's NIL
                raise _bad_url(raw, "The URLAUTH URL is not valid.")
            return granted
        try:
            url = parse_imap_url(raw)
        except BadUrl as exc:
            raise _bad_url(raw, f"Invalid IMAP URL: {exc}.") from None
        return await self.own_part(raw, url)

    async def own_part(self, raw: str, url: ImapUrl) -> UrlPart:
        """The part `url` names in the user's own mailboxes; CommandFailed (BADURL) else."""
        session = self._session
        account = session.user_account
        if url.user is not None and url.user.lower() != account.user.email.lower():
            raise _bad_url(raw, "The URL names another user's mailbox.")
        try:
            async with session.context.engine.connect() as conn:
                box = await get_mailbox(conn, account, url.mailbox)
        except MailboxNotFound:
            raise _bad_url(raw, "The URL's mailbox does not exist.") from None
        if url.uidvalidity is not None and url.uidvalidity != box.uidvalidity:
            raise _bad_url(raw, "The URL's UIDVALIDITY is not the mailbox's.")
        selected = self._opened.get(box.id)
        if selected is None:
            current = session.selected
            if current is not None and current.mailbox_id == box.id:
                selected = current
            else:
                selected = SelectedMailbox(session.context, account, box, read_only=True)
                await selected.load()
                self._opened[box.id] = selected
        if url.uid not in selected.rows or selected.is_expunged(url.uid):
            raise _bad_url(raw, "The URL's message does not exist.")
        fetch = MessageFetch(session, selected, 0, url.uid)
        plan = await fetch.section_plan(url.section, url.partial)
        if not plan.found:
            raise _bad_url(raw, "The URL's part does not exist.")
        return UrlPart(fetch, plan, url.partial)


async def catenated(parts: list[bytes | UrlPart | GrantedPart], limit: int) -> AsyncIterator[bytes]:
    """The new message's bytes, part after part; CommandFailed past `limit` bytes."""
    size = 0
    for part in parts:
        pieces = _single(part) if isinstance(part, bytes) else part.pieces()
        async for piece in pieces:
            size += len(piece)
            if size > limit:
                raise CommandFailed("The message is larger than APPENDLIMIT.", "[TOOBIG]")
            yield piece


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data
