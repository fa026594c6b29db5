"""Sort key records (`store.seal_sort_chunk`, `imap/message/_sortrecord.py`) as the
server reads and writes them.

A first SORT or THREAD of a mailbox on a new process (or after the in-memory table
went) reads the keys of its messages from a few sealed chunks of 2,048 UIDs instead of
opening 10,000 sealed message caches and making each one's keys (`read_recorded`).
Written from keys already made: by the background pass of `_fulltext` for the messages
whose caches it (or a session) sealed (`record_mailbox`), and by a session that had to
make keys the slow way (`write_recorded`), including those taken from delivery's sort
entries, which the write deletes. Delivery never writes chunks (it holds no private
key). Every key is immutable for its message, so nothing invalidates a chunk;
entries of expunged messages are left out when a chunk is written next. A message
missing from the record is done the slow way, so results never depend on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.concurrency import run_blocking
from cryptmail.db import tables as t
from cryptmail.errors import CryptmailError
from cryptmail.imap.message._analysis import MessageAnalysis
from cryptmail.imap.message._sortkeys import SortKeys, SortMemo, sort_keys
from cryptmail.imap.message._sortrecord import SortBlock, SortEntry, encode_sort_record
from cryptmail.keys import UnlockedAccount
from cryptmail.store import (
    SORT_CHUNK_UIDS,
    MailboxId,
    MessageCache,
    MessageId,
    load_caches,
    load_sort_chunks,
    open_sort_chunk,
    save_sort_chunks,
    seal_sort_chunk,
    sort_chunk_of,
)

log = logging.getLogger(__name__)

_CACHES_PER_STEP: Final = 2048
"""Caches the background pass opens for keys per step (then it pauses, as for indexing)."""

Wanted = Mapping[int, tuple[int, float]]
"""{uid: (row id, arrival)} of the messages whose keys are asked for."""


def _open_block(
    account: UnlockedAccount,
    mailbox_id: MailboxId,
    uidvalidity: int,
    chunk: int,
    value: bytes,
    wanted: Wanted | None,
) -> SortBlock | None:
    span = range(chunk * SORT_CHUNK_UIDS, (chunk + 1) * SORT_CHUNK_UIDS)
    try:
        return SortBlock(
            open_sort_chunk(account, mailbox_id, uidvalidity, chunk, value), wanted, span
        )
    except (CryptmailError, ValueError) as exc:
        # Changed, swapped or from another version: its keys are made again, and
        # the chunk is written anew by whoever makes them.
        log.warning(
            "sort chunk %d of mailbox %d of user %d unreadable (%s); keys made again",
            chunk, mailbox_id, account.user.id, type(exc).__name__,
        )  # fmt: skip
        return None


def _open_chunks(
    account: UnlockedAccount,
    mailbox_id: MailboxId,
    uidvalidity: int,
    sealed: Mapping[int, bytes],
    wanted: Wanted | None,
) -> dict[int, list[SortEntry]]:
    opened: dict[int, list[SortEntry]] = {}
    for chunk, value in sealed.items():
        block = _open_block(account, mailbox_id, uidvalidity, chunk, value, wanted)
        if block is not None:
            opened[chunk] = block.entries()
    return opened


def _open_blocks(
    account: UnlockedAccount,
    mailbox_id: MailboxId,
    uidvalidity: int,
    sealed: Mapping[int, bytes],
    wanted: Wanted,
) -> list[SortBlock]:
    blocks = [
        _open_block(account, mailbox_id, uidvalidity, chunk, value, wanted)
        for chunk, value in sealed.items()
    ]
    return [block for block in blocks if block is not None and len(block)]


async def read_recorded(
    engine: AsyncEngine,
    account: UnlockedAccount,
    mailbox_id: MailboxId,
    uidvalidity: int,
    chunks: Iterable[int],
    wanted_in: Callable[[set[int]], Wanted],
) -> list[SortBlock]:
    """The record's chunks of ``chunks`` that exist, opened: each block takes only the
    entries of ``wanted_in(the chunks found)`` whose row id matches (decoded further
    only as a SORT asks). ``wanted`` is made only once chunks were found: a mailbox
    never recorded (all mail new) costs one query, not a walk over its messages."""
    sealed = await load_sort_chunks(engine, mailbox_id, uidvalidity, set(chunks))
    if not sealed:
        return []
    wanted = wanted_in(set(sealed))
    if not wanted:
        return []
    return await run_blocking(_open_blocks, account, mailbox_id, uidvalidity, sealed, wanted)


def _seal_chunks(
    account: UnlockedAccount,
    mailbox_id: MailboxId,
    uidvalidity: int,
    chunks: Mapping[int, Sequence[SortEntry]],
) -> dict[int, bytes]:
    return {
        chunk: seal_sort_chunk(account, mailbox_id, uidvalidity, chunk, encode_sort_record(entries))
        for chunk, entries in chunks.items()
        if entries
    }


async def write_recorded(
    engine: AsyncEngine,
    account: UnlockedAccount,
    mailbox_id: MailboxId,
    uidvalidity: int,
    chunks: Mapping[int, Sequence[SortEntry]],
) -> None:
    """Replace these chunks with these entries (each chunk's every entry: what it held
    and is still wanted, and what is new)."""
    sealed = await run_blocking(_seal_chunks, account, mailbox_id, uidvalidity, chunks)
    # The rows whose keys the chunks now hold need no delivery sort entry any more.
    rows = [row for entries in chunks.values() for _uid, row, _keys in entries]
    await save_sort_chunks(engine, mailbox_id, uidvalidity, sealed, folded=(account.user.id, rows))


def entries_by_chunk(entries: Iterable[SortEntry]) -> dict[int, list[SortEntry]]:
    out: dict[int, list[SortEntry]] = {}
    for entry in entries:
        out.setdefault(sort_chunk_of(entry[0]), []).append(entry)
    for listed in out.values():
        listed.sort(key=lambda entry: entry[0])
    return out


# -- the background pass --------------------------------------------------------------


async def record_keys(
    engine: AsyncEngine, account: UnlockedAccount, made: Mapping[MessageId, SortKeys]
) -> None:
    """Add keys the pass just made (with the caches it sealed, from the same read) to
    their mailboxes' records: each chunk they fall in is read, its entries of rows no
    longer there dropped, and written back with them."""
    if not made:
        return
    m, b = t.cm_messages, t.cm_mailboxes
    places: dict[tuple[MailboxId, int], list[SortEntry]] = {}
    ids = list(made)
    async with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            query = (
                select(m.c.id, m.c.mailbox_id, m.c.uid, b.c.uidvalidity)
                .select_from(m.join(b, m.c.mailbox_id == b.c.id))
                .where(m.c.id.in_(ids[start : start + 500]), b.c.user_id == account.user.id)
            )
            for row_id, box, uid, validity in await conn.execute(query):
                key = (MailboxId(int(box)), int(validity))
                row = MessageId(int(row_id))
                places.setdefault(key, []).append((int(uid), row, made[row]))
    for (box, validity), entries in places.items():
        touched = entries_by_chunk(entries)
        low, high = min(touched) * SORT_CHUNK_UIDS, (max(touched) + 1) * SORT_CHUNK_UIDS
        around = select(m.c.uid, m.c.id).where(
            m.c.mailbox_id == box, m.c.uid >= low, m.c.uid < high
        )
        async with engine.connect() as conn:
            present = {int(uid): (int(row_id), 0.0) for uid, row_id in await conn.execute(around)}
        sealed = await load_sort_chunks(engine, box, validity, set(touched))
        opened = await run_blocking(_open_chunks, account, box, validity, sealed, present)
        for chunk, new in touched.items():
            fresh = {uid for uid, _row, _keys in new}
            new += [entry for entry in opened.get(chunk, ()) if entry[0] not in fresh]
            new.sort(key=lambda entry: entry[0])
        await write_recorded(engine, account, box, validity, touched)


def _keys_of(
    rows: Sequence[tuple[int, MessageId]], caches: Mapping[MessageId, MessageCache], memo: SortMemo
) -> list[SortEntry]:
    made: list[SortEntry] = []
    for uid, row_id in rows:
        cache = caches.get(row_id)
        if cache is None or not cache.extra:
            continue
        try:
            analysis = MessageAnalysis.from_bytes(cache.extra)
        except ValueError:
            continue
        if analysis.sort_fields is None:
            continue  # a cache from before the sort fields: a SORT fills it in
        keys = sort_keys(analysis.sort_fields, memo)._replace(size=analysis.rfc822_size)
        made.append((uid, row_id, keys))
    return made


async def record_mailbox(
    engine: AsyncEngine,
    account: UnlockedAccount,
    mailbox_id: MailboxId,
    uidvalidity: int,
    tried: set[int],
) -> tuple[int, int]:
    """Record the keys of up to `_CACHES_PER_STEP` messages of the mailbox that have a
    sealed cache, no entry yet and are not in ``tried`` (which gets them: a cache from
    before the sort fields gives no keys here, and is not opened again and again).
    Returns (messages with a cache, caches opened): 0 opened means nothing left to do."""
    m = t.cm_messages
    query = (
        select(m.c.uid, m.c.id)
        .where(m.c.mailbox_id == mailbox_id, m.c.cache_sealed.is_not(None))
        .order_by(m.c.uid.desc())
    )
    async with engine.connect() as conn:
        cached = [(int(uid), MessageId(int(row_id))) for uid, row_id in await conn.execute(query)]
    candidates = [(uid, row_id) for uid, row_id in cached if uid not in tried]
    if not candidates:
        return len(cached), 0
    wanted = {uid: (row_id, 0.0) for uid, row_id in cached}
    sealed = await load_sort_chunks(engine, mailbox_id, uidvalidity)
    opened = await run_blocking(_open_chunks, account, mailbox_id, uidvalidity, sealed, wanted)
    have = {uid for entries in opened.values() for uid, _row, _keys in entries}
    # Newest first (what a client shows first).
    todo = [(uid, row_id) for uid, row_id in candidates if uid not in have][:_CACHES_PER_STEP]
    if not todo:
        return len(cached), 0
    made: list[SortEntry] = []
    memo = SortMemo()  # this step's only: it holds plaintext values
    for start in range(0, len(todo), 500):
        batch = todo[start : start + 500]
        async with engine.connect() as conn:
            caches = await load_caches(conn, account, [row_id for _uid, row_id in batch])
        made += await run_blocking(_keys_of, batch, caches, memo)
    done = {uid for uid, _row_id, _keys in made}
    tried.update(uid for uid, _row_id in todo if uid not in done)
    chunks = entries_by_chunk(made)
    for chunk, new in chunks.items():
        new += opened.get(chunk, ())
    await write_recorded(engine, account, mailbox_id, uidvalidity, {
        chunk: sorted(entries, key=lambda entry: entry[0]) for chunk, entries in chunks.items()
    })  # fmt: skip
    return len(cached), len(todo)


async def user_mailboxes(
    engine: AsyncEngine, account: UnlockedAccount
) -> list[tuple[MailboxId, int, int]]:
    """(mailbox id, uidvalidity, highest modseq) of every mailbox of the user."""
    mb = t.cm_mailboxes
    query = select(mb.c.id, mb.c.uidvalidity, mb.c.highest_modseq).where(
        mb.c.user_id == account.user.id
    )
    async with engine.connect() as conn:
        return [
            (MailboxId(int(box)), int(validity), int(modseq))
            for box, validity, modseq in await conn.execute(query)
        ]
