"""URLAUTH (RFC 4467): GENURLAUTH, URLFETCH and RESETKEY, mechanism INTERNAL.

GENURLAUTH runs in the owner's session (key unlocked): each rump must be an absolute
URL with the user's own name, to an existing message part, with an access identifier
other than ``anonymous``; the store then keeps a grant sealed under a fresh token that
only the answered URL carries. URLFETCH answers each URL with its part, or NIL for any
failure (malformed, another mechanism, wrong or changed token, not this user's to
fetch, expired, revoked, message gone), so nothing tells the reasons apart. RESETKEY
revokes every URL of the user, or those of one mailbox.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from cryptmail.errors import QuotaExceeded
from cryptmail.imap.server._errors import CommandFailed
from cryptmail.imap.server._urlauth import (
    MECHANISM,
    GrantedPart,
    canonical_url,
    encode_plan,
    redeem,
)
from cryptmail.imap.server.commands._catenate import Catenation
from cryptmail.imap.wire._imapurl import BadUrl, parse_imap_url
from cryptmail.imap.wire._parser_urlauth import GenUrlAuth, ResetKey, UrlFetch
from cryptmail.imap.wire._response import append_astring, append_nstring, tagged
from cryptmail.store import get_mailbox, grant_url, revoke_urls

if TYPE_CHECKING:
    from cryptmail.imap.server._session import Session

log = logging.getLogger(__name__)

URLMECH_CODE = f"[URLMECH {MECHANISM}]"


def _refused(text: str) -> CommandFailed:
    return CommandFailed(f"GENURLAUTH refused: {text}.")


async def _generate(session: Session, raw: str, mechanism: str, catenation: Catenation) -> str:
    if mechanism != MECHANISM:
        raise _refused(f"the only mechanism is {MECHANISM}")
    account = session.user_account
    try:
        url = parse_imap_url(raw, urlauth=True)
    except BadUrl:
        raise _refused("not a URLAUTH URL rump") from None
    auth = url.auth
    if auth is None or not auth.rump:
        raise _refused("the URL already carries a token")
    if (url.user or "").lower() != account.user.email.lower():
        raise _refused("a URL may only name the user's own mailboxes")
    if auth.access == "anonymous":
        raise _refused("anonymous access is not offered")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if auth.expire is not None and auth.expire <= now:
        raise _refused("the URL has already expired")
    part = await catenation.own_part(raw, url)
    row, opened = await part.fetch.opened_blob()
    try:
        token = await grant_url(
            session.context.engine,
            account,
            url=canonical_url(url),
            row_id=row.id,
            mailbox_id=row.mailbox_id,
            uid=row.uid,
            opened=opened,
            extra=encode_plan(part.plan, part.partial),
            expires_at=auth.expire,
            limit=session.config.urlauth.max_urls_per_user,
        )
    except QuotaExceeded:
        raise CommandFailed("Too many URLAUTH URLs; RESETKEY revokes them.", "[LIMIT]") from None
    return f"{raw}:{MECHANISM.lower()}:{token}"


async def genurlauth(session: Session, command: GenUrlAuth) -> bytes:
    catenation = Catenation(session)
    try:
        made = [await _generate(session, raw, mech, catenation) for raw, mech in command.urls]
    finally:
        catenation.close()
    line = bytearray(b"* GENURLAUTH")
    for url in made:
        line += b" "
        append_astring(line, url)
    await session.send(bytes(line) + b"\r\n")
    return tagged(command.tag, "OK", "Genurlauth completed.")


async def urlfetch(session: Session, command: UrlFetch) -> bytes:
    found: list[tuple[str, GrantedPart | None]] = []
    for raw in command.urls:
        found.append((raw, await redeem(session, raw)))
    line = bytearray(b"* URLFETCH")
    for raw, part in found:
        line += b" "
        append_nstring(line, raw)
        line += b" "
        if part is None:
            append_nstring(line, None)
            continue
        line += b"{%d}\r\n" % part.size
        await session.send(bytes(line))
        line.clear()
        async for piece in part.pieces():
            await session.send(piece)
    line += b"\r\n"
    await session.send(bytes(line))
    log.debug("URLFETCH: %d of %d URLs answered", sum(p is not None for _, p in found), len(found))
    return tagged(command.tag, "OK", "Urlfetch completed.")


async def resetkey(session: Session, command: ResetKey) -> bytes:
    if any(m != MECHANISM for m in command.mechanisms):
        raise CommandFailed(f"The only URLAUTH mechanism is {MECHANISM}.")
    account = session.user_account
    mailbox_id = None
    if command.mailbox is not None:
        async with session.context.engine.connect() as conn:
            mailbox_id = (await get_mailbox(conn, account, command.mailbox)).id
    await revoke_urls(session.context.engine, account, mailbox_id)
    return tagged(command.tag, "OK", "Resetkey completed.", URLMECH_CODE)
