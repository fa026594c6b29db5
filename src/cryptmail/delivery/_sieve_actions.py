"""Carrying out what the scripts asked for one recipient's copy.

Order, so that nothing is lost and a retry repeats nothing it must not: first every
copy is stored (INBOX or a default folder; or, for a folder of the user's own or
imap4flags, the hidden holding mailbox with a filing note sealed to the user's public
key, which the next session with the key applies, store/_filing.py; each copy is its
own delivery with its own retry tag, so the MTA's retry after a crash stores none
twice), then redirects go out (a relay failure adds the INBOX copy), then the vacation
reply (claimed in cm_sieve_records first, so parallel deliveries send one), then the
duplicate ids are remembered. A reject answers 550 for this recipient only (RFC 5429 2.1.1, LMTP).
Each redirect the relay took is remembered (cm_sieve_records, keyed by the copy's
digest and the target) right after it went, and a retry of the same copy skips it:
a crash between the redirect and our 250 sends it once. Remembered after sending, not
before, because a lost redirect is worse than a repeated one: a crash in the moment
between the relay's 250 and the record's commit still repeats it (Pigeonhole's choice too).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass
from typing import Protocol, cast

from cryptmail.db import UserId
from cryptmail.delivery._relay import (
    REDIRECTED_FROM,
    RelayFailed,
    send_redirect,
    send_vacation,
)
from cryptmail.delivery._sieve import ROLE_BY_FOLDER, SieveDelivery
from cryptmail.errors import StoreError
from cryptmail.sieve import (
    REDIRECT_RECORD_SECONDS,
    CompiledScript,
    FileInto,
    Keep,
    Redirect,
    Reject,
    SieveResult,
    Vacation,
    claim_record,
    note_record,
    redirect_record,
    seen_record,
    vacation_record,
)
from cryptmail.store import DeliveryTarget, FilingRequest, Spool

log = logging.getLogger(__name__)

OK = "250 2.0.0 Message accepted for delivery"
TRANSIENT = "451 4.3.0 Temporary failure, try again later"
_MAX_REASON = 200

Copy = tuple[str, FilingRequest | None]
"""One copy to store: (role, None) for INBOX or a default folder, found by role;
("inbox", request) for a copy that waits in the holding mailbox with a filing note."""


class Deliver(Protocol):
    def __call__(
        self,
        queue_id: str,
        target: DeliveryTarget,
        spool: Spool,
        headers: bytes,
        size: int,
        *,
        role: str = "inbox",
        filing: FilingRequest | None = None,
    ) -> Awaitable[str]: ...


@dataclass(frozen=True)
class SieveJob:
    """One recipient's copy: who, from whom, to which address, with which headers."""

    queue_id: str
    target: DeliveryTarget
    spool: Spool
    headers: bytes
    size: int
    sender: str
    address: str


class SieveCopy:
    """The message bytes Sieve reads, read from the spool at most once per transaction:
    the header alone unless a script tests the body or a redirect sends it on."""

    def __init__(self, spool: Spool, size: int) -> None:
        self.spool = spool
        self.size = size
        self._head: bytes | None = None
        self._whole: bytes | None = None

    async def data(self, whole: bool) -> bytes:
        if self._whole is not None:
            return self._whole
        if not whole and self._head is not None:
            return self._head
        if not whole:
            head = self.spool.head()
            if head is not None:
                self._head = head
                return head
        parts: list[bytes] = []
        # aclosing: a header-only read stops early and must close the spool file now.
        source = cast(AsyncGenerator[bytes, None], self.spool.chunks())  # an async def
        async with contextlib.aclosing(source) as chunks:
            async for chunk in chunks:
                parts.append(chunk)
                if not whole and (b"\r\n\r\n" in chunk or b"\n\n" in chunk):
                    break
        data = b"".join(parts)
        if whole:
            self._whole = data
        else:
            self._head = data
        return data


def reject_reply(reject: Reject) -> str:
    """550 with the script's reason, cut to one printable line."""
    text = "".join(c if c.isprintable() and c.isascii() else " " for c in reject.reason)
    text = " ".join(text.split())[:_MAX_REASON] or "Message rejected"
    return f"550 5.7.1 {text}"


@dataclass(frozen=True)
class SievePlan:
    """What the scripts asked for one recipient's copy, before any of it is done."""

    result: SieveResult
    copies: list[Copy]
    redirects: list[Redirect]
    vacation: Vacation | None

    @property
    def inbox_only(self) -> bool:
        """Only the copy in INBOX, without flags: a copy as every user without a script
        gets, which delivery stores with theirs (one transaction for all)."""
        return self.copies == [("inbox", None)] and not self.redirects and self.vacation is None


async def plan_sieve(
    sieve: SieveDelivery, job: SieveJob, scripts: list[CompiledScript], copy: SieveCopy
) -> SievePlan | str:
    """Run `scripts` (before, the user's, after; at least one) on the copy: the plan,
    or the reply for a reject."""
    # Here only with a compiled script, so the interpreter is loaded already (`_compile`).
    from cryptmail.sieve import SieveEnvelope, SieveMessage

    user_id: UserId = job.target.user.id
    need_body = any("body" in s.extensions for s in scripts)
    raw = job.headers + await copy.data(need_body)
    message = SieveMessage(raw, size=len(job.headers) + job.size)
    result = await sieve.run(user_id, scripts, message, SieveEnvelope(job.sender, job.address))
    for where in result.errors:
        # script:line only; the script's text and the message stay out of the log.
        log.warning("user id %d: sieve error at %s; the message is kept in INBOX", user_id, where)
    rejected = result.rejected
    if rejected is not None:
        log.info("delivery %s user=%d rejected by sieve", job.queue_id, user_id)
        return reject_reply(rejected)
    copies = _copies(user_id, result)
    redirects = [a for a in result.actions if isinstance(a, Redirect)]
    vacation = next((a for a in result.actions if isinstance(a, Vacation)), None)
    if not copies and not redirects:
        log.info("delivery %s user=%d discarded by sieve", job.queue_id, user_id)
    return SievePlan(result, copies, redirects, vacation)


async def carry_out(
    sieve: SieveDelivery, job: SieveJob, plan: SievePlan, copy: SieveCopy, deliver: Deliver
) -> str:
    """Store the plan's copies, then send its redirects and vacation reply, then
    remember its duplicate ids (the order in the module's docstring)."""
    user_id: UserId = job.target.user.id
    for role, filing in plan.copies:
        reply = await deliver(
            job.queue_id, job.target, job.spool, job.headers, job.size, role=role, filing=filing
        )
        if not reply.startswith("2"):
            return reply

    keep = await _redirect(sieve, job, copy, plan.redirects)
    in_inbox = any(
        role == "inbox" and (filing is None or filing.mailbox.upper() == "INBOX")
        for role, filing in plan.copies
    )
    if keep and not in_inbox:
        reply = await deliver(job.queue_id, job.target, job.spool, job.headers, job.size)
        if not reply.startswith("2"):
            return reply
    if plan.vacation is not None:
        await _vacation(sieve, user_id, plan.vacation)
    await remember(sieve, user_id, plan.result)
    return OK


async def remember(sieve: SieveDelivery, user_id: UserId, result: SieveResult) -> None:
    """After the copy is stored: the duplicate ids its tests saw."""
    try:
        await sieve.remember(user_id, result)
    except Exception as exc:  # stored already; a lost duplicate id only repeats a test
        log.warning("user id %d: duplicate ids not saved (%s)", user_id, type(exc).__name__)


def _copies(user_id: UserId, result: SieveResult) -> list[Copy]:
    """The copies to store, each once: (role, None) for INBOX or a default folder
    without flags, which delivery finds by role; ("inbox", request) for anything that
    needs the user's key (a folder of their own, imap4flags): it waits, sealed, in the
    holding mailbox until a session files it (store/_filing.py)."""
    copies: list[Copy] = []
    for action in result.actions:
        if isinstance(action, Keep):
            mailbox, create, flags = "INBOX", False, action.flags
        elif isinstance(action, FileInto):
            mailbox, create, flags = action.mailbox, action.create, action.flags
        else:
            continue
        role = "inbox" if mailbox.upper() == "INBOX" else ROLE_BY_FOLDER.get(mailbox)
        request = FilingRequest.of(mailbox, create, flags)
        copy: Copy = (role, None) if role is not None and not request.flags else ("inbox", request)
        if copy[1] is not None:
            try:
                copy[1].encode()
            except StoreError:
                log.warning("user id %d: a fileinto's folder name is too long; kept", user_id)
                copy = ("inbox", None)
        if copy not in copies:
            copies.append(copy)
    return copies


async def _redirect(
    sieve: SieveDelivery, job: SieveJob, copy: SieveCopy, redirects: list[Redirect]
) -> bool:
    """Send the redirects; True if the message must be kept because one did not go."""
    if not redirects:
        return False
    user_id = job.target.user.id
    if not sieve.relay:
        log.warning("user id %d: sieve redirect kept in INBOX: no sieve.smtp_relay", user_id)
        return True
    whole = job.headers + await copy.data(True)
    me = job.address.lower()
    head = whole.split(b"\r\n\r\n", 1)[0].decode("utf-8", errors="replace").lower()
    if f"{REDIRECTED_FROM.lower()}: {me}" in head:
        log.warning("user id %d: a redirect loop (this copy came back); kept in INBOX", user_id)
        return True
    keep = False
    # The digest the copy's retry tag is made from: a retry of this copy has the same.
    digest = hashlib.sha256(job.headers + job.spool.digest).digest()
    for redirect in redirects:
        record = redirect_record(user_id, digest, redirect.address)
        try:
            if await seen_record(sieve.engine, user_id, record):
                continue  # sent before a crash took our 250: this is the retry
        except Exception as exc:  # cannot tell: send, a duplicate is better than a loss
            log.warning("user id %d: redirect record not read (%s)", user_id, type(exc).__name__)
        try:
            await send_redirect(sieve.relay, job.sender, redirect.address, me, whole)
        except RelayFailed as exc:
            log.warning("user id %d: sieve redirect not sent (%s); kept in INBOX", user_id, exc)
            keep = True
            continue
        try:
            await note_record(sieve.engine, user_id, record, REDIRECT_RECORD_SECONDS)
        except Exception as exc:  # sent; only a retry of this copy would repeat it
            log.warning(
                "user id %d: sent redirect not remembered (%s)", user_id, type(exc).__name__
            )
    return keep


async def _vacation(sieve: SieveDelivery, user_id: UserId, reply: Vacation) -> None:
    if not sieve.relay:
        log.warning("user id %d: vacation reply not sent: no sieve.smtp_relay", user_id)
        return
    try:
        record = vacation_record(user_id, reply.to, reply.handle)
        if not await claim_record(sieve.engine, user_id, record, reply.seconds):
            return  # answered this sender within :days already
        await send_vacation(sieve.relay, reply)
    except RelayFailed as exc:
        log.warning("user id %d: vacation reply not sent (%s)", user_id, exc)
    except Exception as exc:  # the message is stored; a missing reply is not a loss
        log.warning("user id %d: vacation reply failed (%s)", user_id, type(exc).__name__)
