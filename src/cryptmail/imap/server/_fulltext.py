"""The full-text index as IMAP sessions use it: one `UserIndex` per user with a live
session in this process, a background pass that indexes the user's mail while they
are logged in, and the oracle SEARCH consults.

Delivery cannot index (it holds no private key), so new mail is indexed by the first
session that is around: the background pass lists the user's blobs, newest first (what a
client shows first), reads the ones the index lacks in batches (decrypt, parse, words,
in a worker thread), and stores one sealed segment per batch. From the same read it
also seals the message cache (the analysis FETCH, SORT and THREAD need: body structure,
envelope, sort fields, the blob's key) of every row no session has read yet, so the
first SORT after a delivery finds most messages done instead of unwrapping and parsing
each one (`fill_caches`: written only where there is none, first flags left alone so
the message stays \\Recent for whoever selects its mailbox first). It runs for at most
`imap.fts_background_percent` of the time (it sleeps in proportion to what it
worked), starts `START_DELAY_S` after the user's first session begins (at once when
SEARCH or a first read wants it), goes to sleep when nothing is left until SEARCH or
new mail wakes it, and stops when the user's last session ends. SEARCH moves the
messages it had to read the slow way to the front of the queue, and so does the first
read of a message (FETCH's first parse, `_fetch._index`). One process at a
time runs a user's pass (a lease, `store.fulltext.take_lease`); a pass in another
process of the same user only does what its own sessions ask for at once.

Memory stays bounded: only the `imap.fts_loaded_users` users who searched last keep
their index's words in memory; the others keep which mails are indexed (16 bytes a
mail) and read the words again at their next SEARCH.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple

from cryptmail.concurrency import run_blocking
from cryptmail.config import ImapConfig
from cryptmail.db import UserId
from cryptmail.errors import CryptmailError
from cryptmail.imap.message._analysis import analyze_message
from cryptmail.imap.message._fts_words import message_words
from cryptmail.imap.message._search import MessageView, Oracle
from cryptmail.imap.message._sortkeys import SortKeys, SortMemo, sort_keys
from cryptmail.imap.message._textsearch import fold_text
from cryptmail.imap.server._sortrecords import record_keys, record_mailbox, user_mailboxes
from cryptmail.imap.wire._requests import (
    SearchAnd,
    SearchHeader,
    SearchKey,
    SearchNot,
    SearchOr,
    SearchText,
)
from cryptmail.keys import UnlockedAccount
from cryptmail.store import (
    HEAD_SIZE,
    BlobId,
    CachedKey,
    MailboxId,
    MessageCache,
    MessageId,
    drop_bare_caches,
    fill_caches,
    open_blob,
    open_small_blob,
    small_blob_plaintext,
    stream_plaintext,
)
from cryptmail.store.blobs import BlobStore
from cryptmail.store.fulltext import (
    HEADER_FIELDS,
    MAX_SEGMENTS,
    Needle,
    UserIndex,
    drop_lease,
    lease_token,
    needle_terms,
    take_lease,
    user_messages,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

BATCH: Final = 256
"""Messages read, parsed and stored as one segment per background step."""
_IDLE_S: Final = 30.0
"""How long the pass sleeps with nothing to do before it looks for new mail again."""
_LEASE_S: Final = 2 * _IDLE_S
"""The lease outlives a step by this much: a holder that died is replaced after it."""
START_DELAY_S: Final = 2.0
"""How long after a user's first session begins the pass starts, unless SEARCH or a
first read wakes it sooner."""


@dataclass(eq=False)
class _User:
    index: UserIndex
    sessions: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    urgent: set[BlobId] = field(default_factory=set)
    skipped: set[BlobId] = field(default_factory=set)
    blobs: dict[BlobId, bool] = field(default_factory=dict)
    uncached: dict[BlobId, list[MessageId]] = field(default_factory=dict)
    todo: list[BlobId] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    token: bytes = b""
    """This process's token for the user's lease (`take_lease`)."""
    leased: bool = False
    pause: float = 0.0
    """The pause after the last step, seconds."""
    recorded: dict[MailboxId, tuple[int, int]] = field(default_factory=dict)
    """Mailboxes whose sort key record was complete, at (uidvalidity, highest modseq);
    emptied when the pass seals caches (their keys are then to be recorded)."""
    unrecordable: dict[MailboxId, set[int]] = field(default_factory=dict)
    """UIDs whose cache gave no keys (from before the sort fields): a SORT does them."""


class FullTextIndexes:
    """The search indexes of the users with a session in this process."""

    def __init__(self, config: ImapConfig, engine: AsyncEngine, blobs: BlobStore) -> None:
        self._config = config
        self._engine = engine
        self._blobs = blobs
        self._users: dict[UserId, _User] = {}
        # Users by last search, most recent last: the first fts_loaded_users keep words.
        self._searched: OrderedDict[UserId, None] = OrderedDict()
        # The passes until they end (a detached user's may still be unwinding).
        self._tasks: set[asyncio.Task[None]] = set()
        # Users whose caches without the analysis this process has handed to the pass.
        self._bare_dropped: set[UserId] = set()

    def attach(self, account: UnlockedAccount) -> None:
        """A session of `account` began: load its index on first use, start the pass."""
        if not self._config.fts_index:
            return
        user = self._users.get(account.user.id)
        if user is None:
            user = self._users[account.user.id] = _User(
                UserIndex(self._engine, account), token=lease_token(account)
            )
            user.task = asyncio.get_running_loop().create_task(self._run(user))
            self._tasks.add(user.task)
            user.task.add_done_callback(self._tasks.discard)
        elif account.fields.generation > user.index.account.fields.generation:
            user.index.account = account  # a re-key: seal new segments under the new key
        user.sessions += 1

    def detach(self, account: UnlockedAccount) -> None:
        """A session of `account` ended; with the last one the pass stops and the index
        leaves memory."""
        user = self._users.get(account.user.id)
        if user is None:
            return
        user.sessions -= 1
        if user.sessions <= 0:
            del self._users[account.user.id]
            self._searched.pop(account.user.id, None)
            if user.task is not None:
                user.task.cancel()

    async def close(self) -> None:
        """Stop the passes (the listener stops); a session that attaches later starts
        its user's pass again."""
        self._users.clear()
        self._searched.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def index_of(self, account: UnlockedAccount) -> UserIndex | None:
        user = self._users.get(account.user.id)
        return None if user is None else user.index

    def searched(self, account: UnlockedAccount) -> None:
        """`account` just searched: keep its words; unload those searched longest ago."""
        self._searched[account.user.id] = None
        self._searched.move_to_end(account.user.id)
        while len(self._searched) > self._config.fts_loaded_users:
            user_id, _ = self._searched.popitem(last=False)
            user = self._users.get(user_id)
            if user is not None:
                user.index.unload()

    def _keeps_words(self, user: _User) -> bool:
        return user.index.account.user.id in self._searched

    def hurry(self, account: UnlockedAccount, blob_ids: set[BlobId]) -> None:
        """Index these next (SEARCH had to read them); wakes the pass."""
        user = self._users.get(account.user.id)
        if user is not None and blob_ids - user.skipped:
            user.urgent |= blob_ids - user.skipped
            user.wake.set()

    # -- the background pass ------------------------------------------------------------

    async def _run(self, user: _User) -> None:
        # Cancelled (the user's last session ended) while holding the lease, the pass
        # leaves it to run out (`_LEASE_S` after its last renewal): a wait here could
        # outlive the server's event loop.
        share = self._config.fts_background_percent / 100
        # A pass begins by listing every blob of the user and reading the index: at
        # 50,000 messages that is more than a SELECT and a FETCH of new mail cost
        # together. A short session (a phone that logs in, fetches what is new and
        # leaves) should not pay it; a longer one pays it once, after its first commands.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(START_DELAY_S):
                await user.wake.wait()
        while True:
            try:
                worked = await self._step(user)
                if not self._keeps_words(user):  # only a searcher's words stay in memory
                    user.index.unload()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("search indexing for user id %d failed", user.index.account.user.id)
                worked = 0.0
                await asyncio.sleep(_IDLE_S)
            if worked:
                user.pause = worked * (1 - share) / share
                await asyncio.sleep(user.pause)
                continue
            user.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_IDLE_S):
                    await user.wake.wait()

    async def _step(self, user: _User) -> float:
        """Index one batch (or merge); the seconds it took, 0 when there was nothing."""
        index = user.index
        started = time.monotonic()
        if index.account.user.id not in self._bare_dropped:
            self._bare_dropped.add(index.account.user.id)  # once, even if it fails
            await self._drop_bare(index.account)
        if not user.todo:
            await index.refresh()
            await self._list(user)
            user.todo = [b for b in user.blobs if self._wanted(user, b)]
        if user.todo and not await self._hold_lease(user):
            user.todo = []  # a pass in another process is on it; only urgent work here
        if not user.todo:
            if not user.urgent:
                if user.leased:  # done: whichever pass sees new mail first takes it
                    user.leased = False
                    await drop_lease(self._engine, index.account.user.id, user.token)
                if await index.compact(set(user.blobs)):
                    return time.monotonic() - started
                if await self._record_step(user):
                    return time.monotonic() - started
                return 0.0
        urgent = [b for b in user.urgent if b not in index.indexed]
        user.urgent.clear()
        batch = list(dict.fromkeys(urgent + user.todo[:BATCH]))[:BATCH]
        chosen = set(batch)
        user.todo = [b for b in user.todo if b not in chosen]
        # Read the list again when new mail came, and before every batch of the cache
        # work: a FETCH or SORT (here, or in another process) may have sealed these
        # messages' caches meanwhile, and then only their words are left to do.
        if any(b not in user.blobs or b in user.uncached for b in batch):
            await self._list(user)
        known = [(b, user.blobs[b]) for b in batch if b in user.blobs and self._wanted(user, b)]
        if not known:
            return time.monotonic() - started
        docs, caches, keys = await self._read(user, known)
        await index.add(docs)
        if caches:
            await fill_caches(self._engine, index.account, caches)
            user.recorded.clear()  # the catch-up (`_record_step`) looks again, later
            try:  # their sort keys, made from the same read, into the mailboxes' records
                await record_keys(self._engine, index.account, keys)
            except CryptmailError as exc:  # a SORT or the catch-up records them
                log.warning("sort keys of user %d not recorded: %s", index.account.user.id, exc)
            for row_id, blob_id, _cache in caches:
                rows = user.uncached.get(blob_id)
                if rows is not None and row_id in rows:
                    rows.remove(row_id)
                    if not rows:
                        del user.uncached[blob_id]
        # Merge while indexing too, so a long first pass never leaves hundreds of small
        # segments for SEARCH to go through.
        await index.compact(set(user.blobs), above=2 * MAX_SEGMENTS)
        return time.monotonic() - started

    async def _drop_bare(self, account: UnlockedAccount) -> None:
        """Caches an import before issue 16 left (size and key, no analysis) are never
        filled by the pass, which seals a cache only where a row has none: forgetting
        them makes the pass analyse those messages from the read it makes anyway, so an
        old store is repaired without running the import again. Once per user and
        process (a scan of the user's short caches)."""
        try:
            dropped = await drop_bare_caches(self._engine, account)
        except CryptmailError as exc:  # SORT and FETCH still read those messages' blobs
            log.warning("caches of user %d not checked: %s", account.user.id, exc)
            return
        if dropped:
            log.info(
                "%d caches of user %d without the analysis handed to the pass",
                dropped, account.user.id,
            )  # fmt: skip

    async def _record_step(self, user: _User) -> bool:
        """Record the sort keys of one mailbox's messages that have a cache and no entry
        (up to a step's worth); False when every mailbox's record is complete."""
        account = user.index.account
        for mailbox_id, uidvalidity, modseq in await user_mailboxes(self._engine, account):
            if user.recorded.get(mailbox_id) == (uidvalidity, modseq):
                continue
            tried = user.unrecordable.setdefault(mailbox_id, set())
            try:
                _cached, opened = await record_mailbox(
                    self._engine, account, mailbox_id, uidvalidity, tried
                )
            except CryptmailError as exc:  # deleted meanwhile, or the database failed
                log.warning("sort keys of mailbox %d not recorded: %s", mailbox_id, exc)
                opened = 0
            if opened:
                return True
            user.recorded[mailbox_id] = (uidvalidity, modseq)
        return False

    async def _hold_lease(self, user: _User) -> bool:
        """Take or renew the user's lease: long enough for this step and the pause after
        it, so it runs out only when this process stops working for the user."""
        seconds = _LEASE_S + 2 * user.pause
        user.leased = await take_lease(
            self._engine, user.index.account.user.id, user.token, seconds
        )
        return user.leased

    async def _list(self, user: _User) -> None:
        listed = await user_messages(self._engine, user.index.account.user.id)
        user.blobs, user.uncached = listed.blobs, listed.uncached

    @staticmethod
    def _wanted(user: _User, blob_id: BlobId) -> bool:
        if blob_id in user.skipped:
            return False
        return blob_id not in user.index.indexed or blob_id in user.uncached

    async def _read(
        self, user: _User, batch: list[tuple[BlobId, bool]]
    ) -> tuple[list[_Doc], list[tuple[MessageId, BlobId, MessageCache]], dict[MessageId, SortKeys]]:
        """Each blob read once: its words if the index lacks them, its cache for the
        rows that have none."""
        account = user.index.account
        heads = await self._blobs.read_heads([b for b, _s in batch], HEAD_SIZE)
        small = [
            _Wanted(b, s, heads[b], b not in user.index.indexed, b in user.uncached)
            for b, s in batch
            if b in heads and len(heads[b]) < HEAD_SIZE
        ]
        memo = SortMemo()  # this batch's only: it holds plaintext values
        read = await run_blocking(_read_small, account, small, user.skipped, memo)
        for blob_id, sealed in batch:
            head = heads.get(blob_id)
            if head is not None and len(head) < HEAD_SIZE:
                continue
            large = await self._read_large(account, blob_id, sealed)
            if large is None:
                user.skipped.add(blob_id)
                continue
            message, key = large
            wanted = _Wanted(
                blob_id, sealed, b"", blob_id not in user.index.indexed, blob_id in user.uncached
            )
            read.append(await run_blocking(_digest, wanted, message, key, memo))
        docs: list[_Doc] = []
        caches: list[tuple[MessageId, BlobId, MessageCache]] = []
        keys: dict[MessageId, SortKeys] = {}
        for blob_id, words, cache, made in read:
            if words is not None:
                docs.append((blob_id, words))
            if cache is not None:
                rows = user.uncached.get(blob_id, ())
                caches += [(row_id, blob_id, cache) for row_id in rows]
                if made is not None:
                    keys.update((row_id, made) for row_id in rows)
        return docs, caches, keys

    async def _read_large(
        self, account: UnlockedAccount, blob_id: BlobId, sealed: bool
    ) -> tuple[bytes, CachedKey] | None:
        limit = self._config.fts_max_message_size
        try:
            opened = await open_blob(self._blobs, account, blob_id, expect_sealed=sealed)
            # Sealing adds far less than 1 % to a blob: one that is larger than this is
            # over the limit for certain, and is not read (a 20 MB message would
            # otherwise be held whole just to learn that; its first FETCH indexes it).
            if opened.blob_size > limit + limit // 100 + 65536:
                return None
            pieces = []
            size = 0
            async for piece in stream_plaintext(self._blobs, opened):
                size += len(piece)
                if size > limit:
                    return None
                pieces.append(piece)
        except CryptmailError:
            return None  # unreadable or gone: SEARCH reads it, and reports it, the slow way
        return b"".join(pieces), opened.key


_Doc = tuple[BlobId, dict[int, set[str]]]


class _Wanted(NamedTuple):
    blob_id: BlobId
    sealed: bool
    contents: bytes
    words: bool
    cache: bool


_Digest = tuple[BlobId, dict[int, set[str]] | None, MessageCache | None, SortKeys | None]


def _digest(wanted: _Wanted, message: bytes, key: CachedKey, memo: SortMemo) -> _Digest:
    words = message_words(message) if wanted.words else None
    cache = None
    keys = None
    if wanted.cache:
        # As FETCH's first read makes it (`_fetch._analyze_small`), preview included.
        analysis = analyze_message(message, with_preview=True)
        cache = MessageCache(len(message), key.message_key, analysis.to_bytes(), key.payload_key)
        if analysis.sort_fields is not None:  # for the sort key record (`_sortrecords`)
            keys = sort_keys(analysis.sort_fields, memo)._replace(size=analysis.rfc822_size)
    return wanted.blob_id, words, cache, keys


def _read_small(
    account: UnlockedAccount, small: list[_Wanted], skipped: set[BlobId], memo: SortMemo
) -> list[_Digest]:
    done = []
    for wanted in small:
        try:
            opened = open_small_blob(
                wanted.contents, account, wanted.blob_id, expect_sealed=wanted.sealed
            )
            message = small_blob_plaintext(opened)
        except CryptmailError:
            skipped.add(wanted.blob_id)
            continue
        done.append(_digest(wanted, message, opened.key, memo))
    return done


# -- SEARCH -----------------------------------------------------------------------------


def _text_keys(key: SearchKey) -> Iterator[SearchText | SearchHeader]:
    if isinstance(key, SearchText | SearchHeader):
        yield key
    elif isinstance(key, SearchAnd):
        for sub in key.keys:
            yield from _text_keys(sub)
    elif isinstance(key, SearchOr):
        yield from _text_keys(key.left)
        yield from _text_keys(key.right)
    elif isinstance(key, SearchNot):
        yield from _text_keys(key.key)


def _needle(key: SearchText | SearchHeader) -> Needle | None:
    if isinstance(key, SearchText):
        kind = "text" if key.include_headers else "body"
    else:
        kind = key.field.lower()
        if kind not in HEADER_FIELDS:
            return None
    folded = fold_text(key.value)
    if not folded:
        return None
    terms, whole = needle_terms(folded)
    return Needle(kind, terms, whole) if terms else None


async def search_oracle(
    indexes: FullTextIndexes,
    account: UnlockedAccount,
    program: SearchAnd,
    blob_of: dict[int, BlobId],
) -> Oracle | None:
    """What the index knows about the program's text and header keys on the messages
    (`blob_of`: UID -> blob id); None when it knows nothing useful. Messages it has not
    indexed are queued to be indexed next."""
    index = indexes.index_of(account)
    keys = list(_text_keys(program))
    if index is None or not keys:
        return None
    await index.refresh()
    missing = {b for b in blob_of.values() if b not in index.indexed}
    if missing:
        indexes.hurry(account, missing)
    if len(missing) == len(blob_of):
        return None
    lookups = {}
    for key in keys:
        needle = _needle(key)
        if needle is not None:
            lookups[id(key)] = await index.lookup(needle)
    indexes.searched(account)
    if not lookups:
        return None

    def oracle(key: SearchKey, view: MessageView) -> bool | None:
        found = lookups.get(id(key))
        return None if found is None else found.verdict(blob_of[view.uid])

    return oracle
