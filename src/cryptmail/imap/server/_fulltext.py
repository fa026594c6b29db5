"""The full-text index as IMAP sessions use it: one `UserIndex` per user with a live
session in this process, a background pass that indexes the user's mail while they
are logged in, and the oracle SEARCH consults.

Delivery cannot index (it holds no private key), so new mail is indexed by the first
session that is around: the background pass lists the user's blobs, reads the ones the
index lacks in batches (decrypt, parse, words, in a worker thread), and stores one
sealed segment per batch. It runs for at most `imap.fts_background_percent` of the
time (it sleeps in proportion to what it worked), goes to sleep when nothing is left
until SEARCH or new mail wakes it, and stops when the user's last session ends. SEARCH
moves the messages it had to read the slow way to the front of the queue, and so does
the first read of a message (FETCH's first parse, `_fetch._index`).

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
from typing import TYPE_CHECKING, Final

from cryptmail.concurrency import run_blocking
from cryptmail.config import ImapConfig
from cryptmail.db import UserId
from cryptmail.errors import CryptmailError
from cryptmail.imap.message._fts_words import message_words
from cryptmail.imap.message._search import MessageView, Oracle
from cryptmail.imap.message._textsearch import fold_text
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
    needle_terms,
    user_blobs,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

BATCH: Final = 256
"""Messages read, parsed and stored as one segment per background step."""
_IDLE_S: Final = 30.0
"""How long the pass sleeps with nothing to do before it looks for new mail again."""


@dataclass(eq=False)
class _User:
    index: UserIndex
    sessions: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    urgent: set[BlobId] = field(default_factory=set)
    skipped: set[BlobId] = field(default_factory=set)
    blobs: dict[BlobId, bool] = field(default_factory=dict)
    todo: list[BlobId] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


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

    def attach(self, account: UnlockedAccount) -> None:
        """A session of `account` began: load its index on first use, start the pass."""
        if not self._config.fts_index:
            return
        user = self._users.get(account.user.id)
        if user is None:
            user = self._users[account.user.id] = _User(UserIndex(self._engine, account))
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
        share = self._config.fts_background_percent / 100
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
                await asyncio.sleep(worked * (1 - share) / share)
                continue
            user.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_IDLE_S):
                    await user.wake.wait()

    async def _step(self, user: _User) -> float:
        """Index one batch (or merge); the seconds it took, 0 when there was nothing."""
        index = user.index
        started = time.monotonic()
        if not user.todo:
            await index.refresh()
            user.blobs = await user_blobs(self._engine, index.account.user.id)
            user.todo = [b for b in user.blobs if b not in index.indexed and b not in user.skipped]
            if not user.todo and not user.urgent:
                if await index.compact(set(user.blobs)):
                    return time.monotonic() - started
                return 0.0
        urgent = [b for b in user.urgent if b not in index.indexed]
        user.urgent.clear()
        batch = list(dict.fromkeys(urgent + user.todo[:BATCH]))[:BATCH]
        chosen = set(batch)
        user.todo = [b for b in user.todo if b not in chosen]
        if any(b not in user.blobs for b in batch):  # new mail since the list was read
            user.blobs = await user_blobs(self._engine, index.account.user.id)
        known = [(b, user.blobs[b]) for b in batch if b in user.blobs]
        docs = await self._read_words(user, known)
        await index.add(docs)
        # Merge while indexing too, so a long first pass never leaves hundreds of small
        # segments for SEARCH to go through.
        await index.compact(set(user.blobs), above=2 * MAX_SEGMENTS)
        return time.monotonic() - started

    async def _read_words(
        self, user: _User, batch: list[tuple[BlobId, bool]]
    ) -> list[tuple[BlobId, dict[int, set[str]]]]:
        account = user.index.account
        heads = await self._blobs.read_heads([b for b, _s in batch], HEAD_SIZE)
        small = [(b, s, heads[b]) for b, s in batch if b in heads and len(heads[b]) < HEAD_SIZE]
        docs = await run_blocking(_words_of_small, account, small, user.skipped)
        for blob_id, sealed in batch:
            head = heads.get(blob_id)
            if head is not None and len(head) < HEAD_SIZE:
                continue
            message = await self._read_large(account, blob_id, sealed)
            if message is None:
                user.skipped.add(blob_id)
                continue
            docs.append((blob_id, await run_blocking(message_words, message)))
        return docs

    async def _read_large(
        self, account: UnlockedAccount, blob_id: BlobId, sealed: bool
    ) -> bytes | None:
        limit = self._config.fts_max_message_size
        try:
            opened = await open_blob(self._blobs, account, blob_id, expect_sealed=sealed)
            # Sealing adds far less than 1 % to a blob: one that is larger than this is
            # over the limit for certain, and is not read (a 20 MB message would
            # otherwise be held whole just to learn that).
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
        return b"".join(pieces)


def _words_of_small(
    account: UnlockedAccount, small: list[tuple[BlobId, bool, bytes]], skipped: set[BlobId]
) -> list[tuple[BlobId, dict[int, set[str]]]]:
    docs = []
    for blob_id, sealed, contents in small:
        try:
            message = small_blob_plaintext(
                open_small_blob(contents, account, blob_id, expect_sealed=sealed)
            )
        except CryptmailError:
            skipped.add(blob_id)
            continue
        docs.append((blob_id, message_words(message)))
    return docs


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
