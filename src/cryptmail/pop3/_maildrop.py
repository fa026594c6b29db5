"""The maildrop one POP3 session sees: INBOX as it was at login (RFC 1939 section 4:
mail delivered later waits for the next session), numbered 1..n in UID order.

Sizes are the octets RETR sends (CRLF line ends, without dot-stuffing): the exact size
from the message's sealed cache when an IMAP session has indexed it, else counted by
reading the message once. The cache holds the stored size, which is the same for what
Postfix delivers and `import maildir` stores (both CRLF); a message an IMAP client
appended with bare LF line ends is listed that many octets short.

UIDLs are Dovecot's default `%08Xu%08Xv` (UID, then UIDVALIDITY, 8 upper-case hex digits
each), so they survive sessions and an import from Dovecot, which keeps both.

DELE only marks; `commit` (QUIT) expunges the marked messages as IMAP EXPUNGE does and
sets \\Seen on those retrieved (Dovecot's default, `pop3_no_flag_updates = no`). A
session that ends without QUIT deletes nothing; like Dovecot's, it still marks what it
retrieved \\Seen (`mark_seen`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.errors import BlobMissing, MessageNotFound
from cryptmail.keys import UnlockedAccount
from cryptmail.pop3._wire import CrlfNormalizer
from cryptmail.store import (
    CachedKey,
    ChangeBus,
    MailboxId,
    MessageRow,
    OpenedBlob,
    change_flags,
    drop_unreferenced_blobs,
    expunge_messages,
    inbox_id,
    load_caches,
    load_message,
    load_messages,
    mailbox_by_id,
    open_blob,
    stream_plaintext,
)
from cryptmail.store.blobs import BlobStore

log = logging.getLogger(__name__)

SEEN_FLAG = "\\Seen"


def uidl(uid: int, uidvalidity: int) -> str:
    """Dovecot's default `pop3_uidl_format = %08Xu%08Xv`."""
    return f"{uid:08X}{uidvalidity:08X}"


@dataclass
class Entry:
    """One message of the maildrop and what this session did to it."""

    row: MessageRow
    size: int
    key: CachedKey | None = None
    deleted: bool = False
    retrieved: bool = False


@dataclass(frozen=True)
class Committed:
    """What QUIT changed."""

    expunged: int
    seen: int


class Maildrop:
    """See the module docstring. Message numbers are 1-based, as the client gives them."""

    def __init__(
        self,
        engine: AsyncEngine,
        blobs: BlobStore,
        account: UnlockedAccount,
        mailbox_id: MailboxId,
        uidvalidity: int,
        entries: list[Entry],
    ) -> None:
        self._engine = engine
        self._blobs = blobs
        self._account = account
        self.mailbox_id = mailbox_id
        self.uidvalidity = uidvalidity
        self.entries = entries

    @classmethod
    async def load(
        cls, engine: AsyncEngine, blobs: BlobStore, account: UnlockedAccount
    ) -> Maildrop:
        """INBOX of `account` now, every message's size known."""
        async with engine.connect() as conn:
            mailbox_id = await inbox_id(conn, account.user.id)
            mailbox = await mailbox_by_id(conn, account, mailbox_id)
            rows = await load_messages(conn, account, mailbox_id)
            caches = await load_caches(conn, account, [r.id for r in rows])
        drop = cls(engine, blobs, account, mailbox_id, mailbox.uidvalidity, [])
        for row in rows:
            cache = caches.get(row.id)
            if cache is not None:
                drop.entries.append(Entry(row, cache.size, cache.key))
                continue
            entry = Entry(row, 0)
            try:
                entry.size = await drop._count(entry)
            except MessageNotFound:
                continue  # expunged by another session while this one logged in
            drop.entries.append(entry)
        return drop

    # -- the view ------------------------------------------------------------------------

    def get(self, number: int) -> Entry | None:
        """The message numbered `number`, or None if there is none or it is marked."""
        if not 1 <= number <= len(self.entries):
            return None
        entry = self.entries[number - 1]
        return None if entry.deleted else entry

    def listed(self) -> list[tuple[int, Entry]]:
        """(number, entry) of every message not marked deleted."""
        return [(n, e) for n, e in enumerate(self.entries, 1) if not e.deleted]

    def stat(self) -> tuple[int, int]:
        listed = self.listed()
        return len(listed), sum(e.size for _, e in listed)

    def uidl(self, entry: Entry) -> str:
        return uidl(entry.row.uid, self.uidvalidity)

    def reset(self) -> None:
        for entry in self.entries:
            entry.deleted = False

    # -- reading -------------------------------------------------------------------------

    async def read(self, entry: Entry) -> AsyncGenerator[bytes, None]:
        """The message as stored, verified piece by piece; MessageNotFound if another
        session expunged it meanwhile."""
        opened = await self._open(entry)
        async for piece in stream_plaintext(self._blobs, opened):
            yield piece

    async def _count(self, entry: Entry) -> int:
        normalizer = CrlfNormalizer()
        size = 0
        async for piece in self.read(entry):
            size += len(normalizer.feed(piece))
        return size + len(normalizer.finish())

    async def _open(self, entry: Entry) -> OpenedBlob:
        key = entry.key or CachedKey()
        try:
            return await open_blob(
                self._blobs,
                self._account,
                entry.row.blob_id,
                message_key=key.message_key,
                payload_key=key.payload_key,
                expect_sealed=entry.row.sealed,
            )
        except BlobMissing:
            # Expunged by another session (its blob dropped), or given a new blob by
            # `cryptmail mailbox encrypt`: read the row again to tell which.
            async with self._engine.connect() as conn:
                fresh = await load_message(conn, self._account, entry.row.id)
            if fresh is None:
                raise MessageNotFound("the message was expunged by another session") from None
            if fresh.blob_id == entry.row.blob_id:
                raise
            entry.row, entry.key = fresh, None
            return await open_blob(
                self._blobs, self._account, fresh.blob_id, expect_sealed=fresh.sealed
            )

    # -- QUIT ----------------------------------------------------------------------------

    async def mark_seen(self, bus: ChangeBus) -> int:
        """Set \\Seen on the messages retrieved and not marked deleted; how many changed.
        Dovecot does this at QUIT and also when a session ends without one."""
        seen = [e.row.id for e in self.entries if e.retrieved and not e.deleted]
        if not seen:
            return 0
        update = await change_flags(
            self._engine, self._account, self.mailbox_id, seen, "add", frozenset({SEEN_FLAG})
        )
        for entry in self.entries:
            entry.retrieved = False
        if update.changed:
            bus.publish(self._account.user.id, self.mailbox_id)
        return len(update.changed)

    async def commit(self, bus: ChangeBus) -> Committed:
        """QUIT: `mark_seen`, then expunge the messages marked deleted as IMAP does
        (other sessions are told; blobs no row names any more are deleted)."""
        seen = await self.mark_seen(bus)
        doomed = [e.row for e in self.entries if e.deleted]
        if not doomed:
            return Committed(0, seen)
        # Its own transaction through run_transaction: run again after a deadlock with a
        # delivery or another session's expunge (MariaDB, PostgreSQL), and on SQLite in
        # the writers' queue rather than SQLite's busy wait.
        _modseq, blob_ids = await expunge_messages(self._engine, self.mailbox_id, doomed)
        bus.publish(self._account.user.id, self.mailbox_id)
        for entry in self.entries:
            entry.deleted = False  # done: a second commit changes nothing
        await drop_unreferenced_blobs(self._engine, self._blobs, blob_ids)
        return Committed(len(doomed), seen)
