"""Delivery policy: who may receive, where the bytes go, and what each recipient hears.

RCPT resolves the address (aliases, catch-all, several destinations) to users, with
each one's public key and INBOX, and with Sieve each one's active script (sealed;
`_sieve` compiles it once per version), in one read transaction. DATA is
spooled once, encrypted under a key that lives in memory only, then delivered to each
user with that user's public key, with Return-Path and Delivered-To on top (`_trace`).
A user reached by several accepted recipients gets the message once, delivered to the
first of those addresses. The users without a Sieve script, and those whose scripts
ask for nothing but the copy in INBOX (a keep, explicit or implicit, without flags),
get their copies together (`store.deliver_many`): a blob each, but one database
transaction for all their rows; a Sieve user's duplicate ids are remembered after it.
A delivery that takes a user's usage past a `quota.warnings` threshold is followed by
a warning into their INBOX (`_quota_warning`). Errors map to replies in one table; an
unexpected one is a 4xx with no internals, so the sender retries and learns nothing.

The log has one line per delivery: session, transaction (the queue id), user id, size,
result, and for a failure its reason: our errors' messages, which name ids and causes by
design, or only the type of anything else (its text could hold anything). Never a
subject, never an address (the sender is a correspondent; the recipient is logged by id).
A failure's reply carries the queue id too, so the line Postfix logs for the deferral
("said: 451 4.3.0 ... [queue id 3f9a.1]") leads to ours.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.db import UserId, run_transaction
from cryptmail.delivery._protocol import DataSink, Envelope, Session
from cryptmail.delivery._quota_warning import crossed_threshold, warning_message
from cryptmail.delivery._recipient_cache import RecipientCache
from cryptmail.delivery._sieve import FoundScript, SieveDelivery
from cryptmail.delivery._sieve_actions import SieveCopy, SieveJob, carry_out, plan_sieve, remember
from cryptmail.delivery._sort_record import sort_record
from cryptmail.delivery._trace import delivery_headers
from cryptmail.errors import (
    CryptmailError,
    DatabaseError,
    KeyLocked,
    QuotaExceeded,
    RecipientChanged,
    StoreUnavailable,
)
from cryptmail.sieve import SieveResult
from cryptmail.store import (
    Appended,
    ChangePublisher,
    DeliveryEpochs,
    DeliveryJob,
    DeliveryTarget,
    FilingRequest,
    SortFields,
    Spool,
    deliver_many,
    deliver_message,
    resolve_delivery_sync,
    resolve_target,
)
from cryptmail.store.blobs import BlobStore
from cryptmail.users import User

log = logging.getLogger(__name__)

OK = "250 2.0.0 Message accepted for delivery"
UNKNOWN_USER = "550 5.1.1 No such user here"
RECIPIENT_OK = "250 2.1.5 OK"
TRANSIENT = "451 4.3.0 Temporary failure, try again later"
OVER_QUOTA = "452 4.2.2 Mailbox full"
NO_KEYS = "451 4.3.0 Mailbox not ready yet, try again later"


# The one table from errors to replies; the nearest base class of an error decides. An
# error it does not name is TRANSIENT as well: the sender retries and learns nothing.
REPLIES: dict[type[BaseException], str] = {
    QuotaExceeded: OVER_QUOTA,
    KeyLocked: NO_KEYS,
    StoreUnavailable: TRANSIENT,
    # A conflict is a race with another delivery: the retry finds what that one stored.
    DatabaseError: TRANSIENT,
}


def failure_reason(exc: BaseException) -> str:
    """What the log says about a failed delivery: the type and, for our own errors and
    OS errors, the message (ours name ids and causes, never content; an OS error its
    errno text). Anything else only by type: its text could quote a message or an
    address; the traceback is logged at DEBUG."""
    name = type(exc).__name__
    if isinstance(exc, CryptmailError):
        return f"{name}: {exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{name}: {exc.strerror}"
    return f"{name} (unexpected; the traceback is logged at DEBUG)"


def reply_for(exc: BaseException) -> str:
    """The LMTP reply for a failed delivery, from REPLIES."""
    for klass in type(exc).__mro__:
        if klass in REPLIES:
            return REPLIES[klass]
    return TRANSIENT


@dataclass(frozen=True)
class Accepted:
    """What RCPT found for one address (the protocol's token for it): the users it
    reaches, and with Sieve, each one's active script as read in the same transaction."""

    targets: list[DeliveryTarget]
    scripts: dict[UserId, FoundScript]


class DeliveryHandler:
    """Resolves recipients and delivers into the encrypted store."""

    def __init__(
        self,
        engine: AsyncEngine,
        blobs: BlobStore,
        spool_dir: Path,
        *,
        bus: ChangePublisher | None = None,
        quota_warnings: Sequence[int] = (),
        message_limit: int = 0,
        sieve: SieveDelivery | None = None,
        recipient_delimiter: str = "",
        recipient_cache_s: float = 0.0,
    ) -> None:
        self._engine = engine
        self._blobs = blobs
        self._spool_dir = spool_dir
        self._bus = bus
        self._quota_warnings = tuple(quota_warnings)
        self._message_limit = message_limit
        self._sieve = sieve
        self._delimiter = recipient_delimiter
        self._epochs = DeliveryEpochs()  # this process's sort entry keys (store/_sortentries)
        self._recipients: RecipientCache[list[DeliveryTarget]] = RecipientCache(recipient_cache_s)
        self._sort_fields: dict[int, SortFields | None] = {}
        """By id of the spool: the record of the message being delivered, made once."""

    async def handle_rcpt(
        self, session: Session, envelope: Envelope, address: str
    ) -> tuple[str, object | None]:
        sieve, delimiter = self._sieve, self._delimiter
        kept = self._recipients.get(address)

        def work(conn: Connection) -> Accepted:
            targets = kept if kept is not None else resolve_delivery_sync(conn, address, delimiter)
            # The active scripts are read for every message, also with the targets kept:
            # a script changed over ManageSieve runs from the very next delivery on.
            scripts = (
                {}
                if sieve is None
                else {t.user.id: sieve.read_active(conn, t.user.id) for t in targets}
            )
            return Accepted(targets, scripts)

        if kept is not None and sieve is None:
            return RECIPIENT_OK, Accepted(kept, {})
        try:
            accepted = await run_transaction(self._engine, work, writes=False)
        except Exception as exc:  # transient: the sender retries
            log.warning(
                "session %s: recipient lookup failed (%s)", session.session_id, type(exc).__name__
            )
            log.debug("recipient lookup failure", exc_info=True)
            return TRANSIENT, None
        if not accepted.targets:
            return UNKNOWN_USER, None
        # Only targets delivery can use as they are: one whose INBOX is still to be made
        # would make it again for every message of the second.
        if kept is None and all(target.inbox is not None for target in accepted.targets):
            users = [target.user.id for target in accepted.targets]
            self._recipients.put(address, users, accepted.targets)
        return RECIPIENT_OK, accepted

    async def open_sink(self, session: Session, envelope: Envelope) -> DataSink:
        return Spool(self._spool_dir)

    async def handle_data(
        self, session: Session, envelope: Envelope, sink: DataSink, size: int
    ) -> Sequence[str]:
        assert isinstance(sink, Spool)  # noqa: S101 - open_sink made it
        try:
            record = await sort_record(sink)
        except Exception as exc:  # the copies are sorted the slow way
            log.warning("session %s: no sort record (%s)", session.session_id, type(exc).__name__)
            record = None
        # Once per message, for every copy (`_deliver` is also Sieve's callback).
        self._sort_fields[id(sink)] = None if record is None else SortFields(self._epochs, record)
        try:
            return await self._handle_data(session, envelope, sink, size)
        finally:
            del self._sort_fields[id(sink)]

    async def _handle_data(
        self, session: Session, envelope: Envelope, sink: Spool, size: int
    ) -> Sequence[str]:
        queue_id = f"{session.session_id}.{session.transactions}"
        outcome: dict[UserId, str] = {}
        together: list[tuple[DeliveryTarget, bytes]] = []  # (target, trace headers)
        kept: dict[UserId, SieveResult] = {}  # Sieve users among `together`
        sender = envelope.sender or ""
        copy = SieveCopy(sink, size) if self._sieve is not None else None
        for address, token in envelope.recipients:
            accepted: Accepted = token  # type: ignore[assignment]  # -- set by handle_rcpt
            for target in accepted.targets:
                user_id = target.user.id
                if user_id in outcome:
                    continue
                headers = delivery_headers(sender, address)
                outcome[user_id] = ""  # decided below, or with the others at the end
                if self._sieve is not None and copy is not None:
                    try:
                        scripts = self._sieve.scripts(
                            self._sieve.compiled(user_id, accepted.scripts.get(user_id))
                        )
                    except Exception as exc:  # a row that does not open: retry, not skip
                        log.warning(
                            "user id %d: sieve scripts not loaded (%s)",
                            user_id,
                            type(exc).__name__,
                        )
                        outcome[user_id] = TRANSIENT
                        continue
                    if scripts:
                        job = SieveJob(queue_id, target, sink, headers, size, sender, address)
                        plan = await plan_sieve(self._sieve, job, scripts, copy)
                        if isinstance(plan, str):  # rejected
                            outcome[user_id] = plan
                            continue
                        if not plan.inbox_only:
                            outcome[user_id] = await carry_out(
                                self._sieve, job, plan, copy, self._deliver
                            )
                            continue
                        # A plain keep is the copy a user without a script gets: it
                        # goes with theirs, in one transaction, under the same retry tag.
                        kept[user_id] = plan.result
                together.append((target, headers))
        if len(together) == 1:
            target, headers = together[0]
            outcome[target.user.id] = await self._deliver(queue_id, target, sink, headers, size)
        elif together:
            await self._deliver_together(queue_id, together, sink, size, outcome)
        for user_id, result in kept.items():
            if self._sieve is not None and outcome[user_id].startswith("2"):
                await remember(self._sieve, user_id, result)
        replies: list[str] = []
        for _address, token in envelope.recipients:
            targets = token.targets  # type: ignore[attr-defined]  # -- set by handle_rcpt
            failed = [outcome[t.user.id] for t in targets if not outcome[t.user.id].startswith("2")]
            replies.append(f"{failed[0]} [queue id {queue_id}]" if failed else OK)
        return replies

    def _digest(
        self,
        spool: Spool,
        headers: bytes,
        role: str = "inbox",
        filing: FilingRequest | None = None,
    ) -> bytes:
        # The copy's bytes are the headers and the spool: a retry of the message from
        # the same sender to the same address has the same digest, without a pass over
        # the message to hash the copy itself. A copy Sieve files elsewhere is another
        # delivery of its own, so its retry is recognised apart from the INBOX copy's.
        digest = hashlib.sha256(headers + spool.digest).digest()
        if role != "inbox":
            digest = hashlib.sha256(digest + b"\0sieve-role\0" + role.encode()).digest()
        if filing is not None:  # each filed copy is a delivery of its own, as above
            digest = hashlib.sha256(digest + b"\0sieve-filing\0" + filing.encode()).digest()
        return digest

    async def _deliver_together(
        self,
        queue_id: str,
        together: list[tuple[DeliveryTarget, bytes]],
        spool: Spool,
        size: int,
        outcome: dict[UserId, str],
    ) -> None:
        jobs = [
            DeliveryJob(
                target,
                _after(headers, spool.chunks()),
                self._digest(spool, headers),
                self._sort_fields.get(id(spool)),
            )
            for target, headers in together
        ]
        results = await deliver_many(
            self._engine, self._blobs, jobs, bus=self._bus, message_limit=self._message_limit
        )
        for (target, headers), result in zip(together, results, strict=True):
            if isinstance(result, RecipientChanged):  # alone, after a fresh lookup
                outcome[target.user.id] = await self._deliver(
                    queue_id, target, spool, headers, size
                )
                continue
            outcome[target.user.id] = await self._reply(
                queue_id, target.user, size + len(headers), result
            )

    async def _reply(
        self, queue_id: str, user: User, size: int, result: Appended | BaseException
    ) -> str:
        """The reply for one user's delivery, logged; a quota warning after it if due."""
        if isinstance(result, BaseException):  # every failure gets a reply, none a traceback
            reply = reply_for(result)
            log.warning(
                "delivery %s user=%d size=%d result=%s: %s",
                queue_id,
                user.id,
                size,
                reply[:3],
                failure_reason(result),
            )
            if reply is TRANSIENT:
                log.debug("delivery failure", exc_info=result)
            return reply
        log.info(
            "delivery %s user=%d size=%d result=250%s",
            queue_id,
            user.id,
            size,
            " (retry of a stored delivery)" if result.duplicate else "",
        )
        if result.used_before is not None and result.blob is not None:
            await self._warn_quota(user, result.used_before, result.blob.size)
        return OK

    async def _deliver(
        self,
        queue_id: str,
        target: DeliveryTarget,
        spool: Spool,
        headers: bytes,
        size: int,
        *,
        role: str = "inbox",
        filing: FilingRequest | None = None,
    ) -> str:
        user = target.user
        size += len(headers)
        result: Appended | Exception
        for attempt in (1, 2):
            try:
                result = await deliver_message(
                    self._engine,
                    self._blobs,
                    user,
                    _after(headers, spool.chunks()),
                    size_hint=size,
                    bus=self._bus,
                    message_digest=self._digest(spool, headers, role, filing),
                    target=target,
                    message_limit=self._message_limit,
                    role=role,
                    filing=filing,
                    sort_fields=self._sort_fields.get(id(spool)),
                )
            except RecipientChanged as exc:
                # A re-key, rotation or crypt switch since the lookup: nothing was
                # stored. Once more with the user as they are now.
                self._recipients.forget_user(user.id)
                result = exc
                if attempt == 2:
                    break
                try:
                    target = await resolve_target(self._engine, user.id)
                except Exception as lookup_failed:  # replied below, as any failure
                    result = lookup_failed
                    break
                user = target.user
                continue
            except Exception as exc:  # every failure gets a reply, none a traceback
                result = exc
            break
        return await self._reply(queue_id, user, size, result)

    async def _warn_quota(self, user: User, used_before: int, added: int) -> None:
        percent = crossed_threshold(user.quota, used_before, added, self._quota_warnings)
        if percent is None:
            return
        used = used_before + added
        message = warning_message(user, percent, used, datetime.now(UTC))

        async def source() -> AsyncIterator[bytes]:
            yield message

        try:
            await deliver_message(
                self._engine, self._blobs, user, source(), size_hint=len(message), bus=self._bus
            )
        except Exception as exc:  # the mail that crossed is stored; the warning is extra
            log.warning("quota warning for user=%d not delivered (%s)", user.id, type(exc).__name__)
            return
        log.info("quota warning for user=%d: %d%% of the quota used", user.id, percent)


async def _after(headers: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The headers as a piece of their own, then the message's pieces as they are: the
    sealer takes pieces of any size, and joining the headers to the first piece would
    copy it."""
    yield headers
    async for chunk in chunks:
        yield chunk
