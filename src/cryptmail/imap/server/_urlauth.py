"""URLAUTH (RFC 4467) in the server: what a URL means, who may use it, and its bytes.

The mechanism is INTERNAL: the token is random, made by GENURLAUTH in the owner's
session and kept only in the URL; the store keeps a grant sealed under it (see
``cryptmail.store`` ``grant_url``). A URL is bound to its grant by its canonical form
(:func:`canonical_url`): owner, mailbox, UIDVALIDITY, UID, section, partial range,
expiry and access identifier, so a URL changed in any of them opens nothing.
The grant carries the part's plan (:func:`encode_plan`), so a URLFETCH neither needs
the owner's key nor parses the message again.

Who may use a URL (RFC 4467 section 3): ``authuser`` any logged-in user, ``user+NAME``
the user NAME, ``submit+NAME`` a submission server, that is a session logged in as one
of ``urlauth.submit_users``. ``anonymous`` is never granted (we have no anonymous
sessions). Every failure answers the same NIL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from cryptmail.imap.message._partmap import SectionPlan, VirtualStream
from cryptmail.imap.message._sections import header_section
from cryptmail.imap.wire._imapurl import BadUrl, ImapUrl, parse_imap_url
from cryptmail.store import OpenedBlob, parse_url_token, read_range, redeem_url

if TYPE_CHECKING:
    from cryptmail.imap.server._session import Session

MECHANISM: Final = "INTERNAL"
_PIECE: Final = 256 * 1024


def canonical_url(url: ImapUrl) -> tuple[str, ...]:
    """What a URL's grant is sealed for: every component but the host and the token."""
    auth = url.auth
    if auth is None:
        raise ValueError("not a URLAUTH URL")
    partial = "" if url.partial is None else f"{url.partial[0]}.{url.partial[1]}"
    expire = "" if auth.expire is None else auth.expire.isoformat()
    return (
        "urlauth-v1", (url.user or "").lower(), url.mailbox, str(url.uidvalidity or ""),
        str(url.uid), str(url.section), partial, expire, auth.access,
    )  # fmt: skip


def encode_plan(plan: SectionPlan, partial: tuple[int, int] | None) -> bytes:
    """The part's plan as the grant keeps it (sealed with the grant)."""
    return json.dumps([list(plan), list(partial) if partial else None]).encode()


def decode_plan(extra: bytes) -> tuple[SectionPlan, tuple[int, int] | None] | None:
    """The plan of :func:`encode_plan`; None if it is not one (never trusted blindly)."""
    try:
        fields, partial = json.loads(extra)
        found, offset, length, vsize, size, skip, names, exclude, cached = fields
        plan = SectionPlan(
            bool(found), int(offset), int(length), int(vsize),
            None if size is None else int(size), int(skip),
            None if names is None else tuple(str(n) for n in names),
            bool(exclude), bool(cached),
        )  # fmt: skip
        window = None if partial is None else (int(partial[0]), int(partial[1]))
    except (ValueError, TypeError):
        return None
    return plan, window


def may_use(session: Session, url: ImapUrl) -> bool:
    """Whether the logged-in user may use `url` under its access identifier."""
    auth = url.auth
    if auth is None or session.account is None:
        return False
    me = session.account.user.email.lower()
    if auth.access == "authuser":
        return True
    kind, _plus, name = auth.access.partition("+")
    if kind == "user":
        return name == me
    if kind == "submit":
        return me in {u.lower() for u in session.config.urlauth.submit_users}
    return False


@dataclass(frozen=True)
class GrantedPart:
    """A redeemed URL's part: `size` bytes, read with :meth:`pieces`."""

    session: Session
    opened: OpenedBlob
    plan: SectionPlan
    partial: tuple[int, int] | None
    header: bytes | None  # a HEADER.FIELDS answer, made at once (it is small)

    @property
    def size(self) -> int:
        if self.header is not None:
            return len(self.header)
        return (self.plan.size or 0) if self.plan.found else 0

    async def pieces(self) -> AsyncIterator[bytes]:
        if self.header is not None:
            if self.header:
                yield self.header
            return
        plan = self.plan
        size = self.size
        if size == 0:
            return
        blobs = self.session.context.blobs
        converter: VirtualStream | None = None
        if not plan.needs_conversion:
            pos, left = plan.offset + plan.skip, size
            end = pos + left
        else:
            pos, left = plan.offset, size
            converter = VirtualStream.for_plan(plan)
            end = plan.offset + plan.length
        while left > 0 and pos < end:
            step = min(_PIECE - pos % _PIECE, end - pos)
            data = await read_range(blobs, self.opened, pos, step)
            if not data:
                break
            pos += len(data)
            # NUL as 0x80 (one byte for one), as FETCH does: no NUL in a literal.
            out = converter.feed(data) if converter is not None else data[:left]
            out = out.replace(b"\0", b"\x80")
            left -= len(out)
            if out:
                yield out
        if left > 0:  # shorter than its map says: keep the announced size
            yield b" " * left


def parse_token_url(raw: str) -> tuple[ImapUrl, bytes] | None:
    """A full URLAUTH URL of our mechanism and its token; None for anything else."""
    try:
        url = parse_imap_url(raw, urlauth=True)
    except BadUrl:
        return None
    auth = url.auth
    if auth is None or auth.token is None or auth.mechanism != MECHANISM:
        return None
    token = parse_url_token(auth.token)
    return None if token is None else (url, token)


async def redeem(session: Session, raw: str) -> GrantedPart | None:
    """The part `raw` gives the logged-in user; None for any reason it gives nothing."""
    parsed = parse_token_url(raw)
    if parsed is None:
        return None
    url, token = parsed
    if not may_use(session, url):
        return None
    context = session.context
    grant = await redeem_url(context.engine, context.blobs, token=token, url=canonical_url(url))
    if grant is None:
        return None
    decoded = decode_plan(grant.extra)
    if decoded is None:
        return None
    plan, partial = decoded
    header = None
    if plan.found and plan.header_fields is not None:
        stored = await read_range(context.blobs, grant.opened, plan.offset, plan.length)
        header = header_section(stored, plan, partial)
    return GrantedPart(session, grant.opened, plan, partial, header)
