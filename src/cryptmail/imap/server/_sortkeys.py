"""Sort keys of a mailbox's messages, loaded once and kept in this process's memory.

SORT and THREAD need a few header fields of every message they order. Those fields are
part of the sealed message cache (the analysis FETCH writes); the keys made from them
(:class:`SortKeys`, strings interned so a sender or subject repeated across the mailbox
is held once) are kept per mailbox for the unlocked account, like its listings
(`store.mailbox_listing`): shared by the user's sessions, for the LISTINGS_PER_ACCOUNT
mailboxes used last, and gone with the account object when the user's last session has
ended. A message's keys never change (its content cannot), so the table only grows by
new messages and shrinks by expunged ones; only the first SORT of a mailbox reads every
cache, later ones (in any session, as a webmail's one-connection-per-page) only new
messages'. The table is a :class:`SortIndex`, which also keeps each criterion's order
and the last answers ready (see there); it lives in memory only.

Keys the table lacks come first from the mailbox's sort key record (`_sortrecords`: a
few sealed chunks of 2,048 UIDs, written by the background pass), so the first SORT of
a mailbox in a process opens a handful of rows instead of every message's cache; then
from the sort entries delivery left (`store.take_sort_entries`: one AEAD open each,
no ECDH, the keys decoded only as a SORT asks), which the chunks written next take
over. What neither holds is done the slow way: a message nobody has read yet is
indexed here as FETCH would index it (while the user is logged in, the background pass
of `_fulltext` seals those caches ahead, newest first, so after a while there are few
or none); one whose cache predates the sort fields has its header read (one chunk
decrypted) and its cache stored again with them. Keys made the slow way are then
written to the record, so the next process finds them there.
"""

from __future__ import annotations

import logging
import sys
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from cryptmail.concurrency import run_blocking
from cryptmail.errors import CryptmailError
from cryptmail.imap.message._analysis import MessageAnalysis
from cryptmail.imap.message._sortkeys import SortKeys, SortMemo, header_sort_fields, sort_keys
from cryptmail.imap.message._sortorder import KeyBlock, SortIndex
from cryptmail.imap.server._fetch import index_messages, open_current
from cryptmail.imap.server._sortrecords import entries_by_chunk, read_recorded, write_recorded
from cryptmail.imap.server._writes import SessionWrites, Write
from cryptmail.keys import UnlockedAccount
from cryptmail.store import (
    LISTINGS_PER_ACCOUNT,
    SORT_CHUNK_UIDS,
    MailboxId,
    MessageCache,
    MessageId,
    MessageRow,
    load_caches,
    read_range,
    save_cache,
    sort_chunk_of,
    take_sort_entries,
)

if TYPE_CHECKING:
    from cryptmail.imap.server._selected import SelectedMailbox

log = logging.getLogger(__name__)

_BATCH: Final = 500
"""Caches read per query and keys made per worker call."""

_Tables = OrderedDict[tuple[MailboxId, int], SortIndex]
_shared: dict[int, tuple[weakref.ref[UnlockedAccount], _Tables]] = {}
"""By id of the account object, as the listings are (it is not hashable)."""


_RECORD_MIN: Final = 64
"""Fewer missing keys than this (new mail since the last SORT) are made the slow way
without reading the record, and not written to it (a whole chunk decoded or sealed
for a few messages; the background pass records them soon)."""
_NO_KEYS: Final = SortKeys(None, "", False, "", "", "", "", "", None, ())


def _tables_of(account: UnlockedAccount) -> _Tables:
    key = id(account)
    found = _shared.get(key)
    if found is not None and found[0]() is account:
        return found[1]

    def gone(ref: weakref.ref[UnlockedAccount]) -> None:
        held = _shared.get(key)
        if held is not None and held[0] is ref:
            del _shared[key]

    tables: _Tables = OrderedDict()
    _shared[key] = (weakref.ref(account, gone), tables)
    return tables


def shared_sort_keys(selected: SelectedMailbox) -> SortIndex:
    """The selected mailbox's key table, shared by the account's sessions."""
    if selected.sort_keys is None:
        tables = _tables_of(selected.account)
        key = (selected.mailbox_id, selected.uidvalidity)
        table = tables.get(key)
        if table is None:
            table = tables[key] = SortIndex()
            while len(tables) > LISTINGS_PER_ACCOUNT:
                tables.popitem(last=False)
        tables.move_to_end(key)
        selected.sort_keys = table
    return selected.sort_keys


def _interned(keys: SortKeys, size: int = 0, arrival: float = 0.0) -> SortKeys:
    """The keys with their strings interned and size and arrival set: one new tuple
    (a SORT of 50,000 makes as many; fewer objects, fewer garbage collector runs)."""
    intern = sys.intern
    return SortKeys(
        keys.date,
        intern(keys.subject),
        keys.reply,
        intern(keys.from_),
        intern(keys.to),
        intern(keys.cc),
        intern(keys.display_from),
        intern(keys.display_to),
        None if keys.message_id is None else intern(keys.message_id),
        tuple(intern(ref) for ref in keys.references),
        size,
        arrival,
    )


def _make_keys(
    records: list[tuple[int, int, bytes]],
    arrival: dict[int, float] | None = None,
    memo: SortMemo | None = None,
) -> list[tuple[int, SortKeys]]:
    """Keys of (uid, size, record), with each UID's internal date from ``arrival``."""
    times = arrival or {}
    memo = memo or SortMemo()
    return [
        (uid, _interned(sort_keys(record, memo), size, times.get(uid, 0.0)))
        for uid, size, record in records
    ]


def _analysis(cache: MessageCache | None) -> MessageAnalysis | None:
    if cache is None or not cache.extra:
        return None
    try:
        return MessageAnalysis.from_bytes(cache.extra)
    except ValueError:
        return None


def _analyses(
    rows: Sequence[MessageRow], caches: dict[MessageId, MessageCache]
) -> dict[MessageId, MessageAnalysis | None]:
    return {row.id: _analysis(caches.get(row.id)) for row in rows}


async def _fill_in(
    selected: SelectedMailbox, row: MessageRow, cache: MessageCache, analysis: MessageAnalysis
) -> bytes:
    """The sort record of a message whose cache lacks it: its header, read once."""
    row, opened = await open_current(selected, row, cache.key)
    root = analysis.part_map.parts[0]
    header = b""
    while len(header) < root.header_size:
        piece = await read_range(
            selected.context.blobs, opened, root.header_offset + len(header),
            root.header_size - len(header),
        )  # fmt: skip
        if not piece:
            break
        header += piece
    record = header_sort_fields(header)
    stored = cache._replace(extra=analysis._replace(sort_fields=record).to_bytes())
    async with selected.context.engine.begin() as conn:
        await save_cache(conn, selected.account, row, stored, initial_flags=selected.initial_flags)
    return record


async def load_sort_keys(
    selected: SelectedMailbox, rows: Sequence[MessageRow], later: SessionWrites | None = None
) -> SortIndex:
    """The mailbox's key table, holding every row's keys. The keys just made are
    written to the record (and the delivery entries they came from deleted) before it
    returns, or, with ``later``, once the session has answered (`_writes`).

    Raises the CryptmailError of a message that cannot be read (after the others).
    """
    table = shared_sort_keys(selected)
    missing = [row for row in rows if row.uid not in table]
    if len(missing) >= _RECORD_MIN:
        missing = await _recorded(selected, table, missing)
    made: list[int] = []
    failure: CryptmailError | None = None
    memo = SortMemo()  # this load's only: it holds plaintext values
    if missing:
        missing = await _delivered(selected, table, missing, made)
    for start in range(0, len(missing), _BATCH):
        batch = missing[start : start + _BATCH]
        async with selected.context.engine.connect() as conn:
            caches = await load_caches(conn, selected.account, [row.id for row in batch])
        # Decoded in a worker thread: 500 analyses would hold the event loop (and every
        # other session of this process) for milliseconds.
        analyses = await run_blocking(_analyses, batch, caches)
        never_read = [row for row in batch if analyses[row.id] is None]
        if never_read:
            try:
                await index_messages(selected, never_read)
            except CryptmailError as exc:
                failure = failure or exc
            # The analyses just made are in the session's facts; a cache is read back
            # only for one that is not (indexed alone, or pushed out of the facts).
            reread = []
            for row in never_read:
                facts = selected.facts.get(row.id)
                if facts is None:
                    reread.append(row.id)
                else:
                    analyses[row.id] = facts.analysis
            if reread:
                async with selected.context.engine.connect() as conn:
                    caches.update(await load_caches(conn, selected.account, reread))
                analyses.update((row_id, _analysis(caches.get(row_id))) for row_id in reread)
        records: list[tuple[int, int, bytes]] = []
        for row in batch:
            analysis = analyses[row.id]
            if analysis is None:
                continue  # unreadable: reported below, left out of the order
            record = analysis.sort_fields
            if record is None:
                cache = caches.get(row.id)
                if cache is None:
                    continue
                try:
                    record = await _fill_in(selected, row, cache, analysis)
                except CryptmailError as exc:
                    failure = failure or exc
                    continue
            records.append((row.uid, analysis.rfc822_size, record))
        arrival = {row.uid: row.internal_date.timestamp() for row in batch}
        table.add(await run_blocking(_make_keys, records, arrival, memo))
        made += [uid for uid, _size, _record in records]
    if len(made) >= _RECORD_MIN:
        write = _record(selected, table, made)
        if later is None:
            await write()
        else:
            later.defer(write, f"sort key record of mailbox {selected.mailbox_id}")
    if failure is not None:
        raise failure
    return table


async def _recorded(
    selected: SelectedMailbox, table: SortIndex, missing: list[MessageRow]
) -> list[MessageRow]:
    """Take the keys of ``missing`` (and of their chunks' other messages the table
    lacks) from the mailbox's sort key record; the rows it did not have."""
    size = SORT_CHUNK_UIDS

    def wanted_in(chunks: set[int]) -> dict[int, tuple[int, float]]:
        wanted: dict[int, tuple[int, float]] = {
            uid: (row.id, row.internal_date.timestamp())
            for uid, row in selected.rows.items()
            if uid // size in chunks and uid not in table
        }
        for row in missing:  # a row the session has not listed (not expected; harmless)
            if row.uid not in wanted and row.uid // size in chunks:
                wanted[row.uid] = (row.id, row.internal_date.timestamp())
        return wanted

    try:
        found = await read_recorded(
            selected.context.engine, selected.account, selected.mailbox_id,
            selected.uidvalidity, {sort_chunk_of(row.uid) for row in missing}, wanted_in,
        )  # fmt: skip
    except CryptmailError as exc:
        log.warning("sort key record of mailbox %d: %s", selected.mailbox_id, exc)
        return missing
    if not found:
        return missing
    for block in found:
        table.add_block(block)
    return [row for row in missing if row.uid not in table]


async def _delivered(
    selected: SelectedMailbox,
    table: SortIndex,
    missing: list[MessageRow],
    made: list[int],
) -> list[MessageRow]:
    """Take the keys of ``missing`` that delivery left sort entries for (one AEAD open
    each, no ECDH, decoded only as a SORT asks: `store.take_sort_entries`), adding
    their UIDs to ``made`` (so the chunks written next hold them, and that write
    deletes the entries); the rows left."""
    try:
        taken = await take_sort_entries(selected.context.engine, selected.account, missing)
    except CryptmailError as exc:  # done the slow way
        log.warning("sort entries of mailbox %d: %s", selected.mailbox_id, exc)
        return missing
    uids = taken.uids()
    if not uids:
        return missing
    table.add_block(taken.ready)
    table.add(taken.made)
    made += sorted(uids)
    return [row for row in missing if row.uid not in uids]


async def unpack_keys(table: SortIndex) -> None:
    """Every key of the table whole, the blocks it holds decoded in a worker thread
    (10,000 key tuples would hold the loop, and every other session, 10 ms or more)."""
    blocks = table.pending()
    if blocks:
        made = await run_blocking(_whole_keys, blocks)
        for block, keys in zip(blocks, made, strict=True):
            table.unpack(block, keys)


def _whole_keys(blocks: list[KeyBlock]) -> list[list[tuple[int, SortKeys]]]:
    return [block.keys() for block in blocks]


def _record(selected: SelectedMailbox, table: SortIndex, made: list[int]) -> Write:
    """The write of the chunks of the UIDs whose keys were just made, with every key the
    table holds for the session's messages in them (what the record had was read into
    the table first). What it writes is taken now: the session may have selected
    another mailbox, or seen an expunge, by the time it runs (a chunk holding an
    expunged message's keys is harmless: a reader takes an entry only for its row)."""
    chunks = {sort_chunk_of(uid) for uid in made}
    rows = selected.rows
    held = [(uid, rows[uid].id) for uid in rows if sort_chunk_of(uid) in chunks and uid in table]
    engine, account = selected.context.engine, selected.account
    mailbox_id, uidvalidity = selected.mailbox_id, selected.uidvalidity

    async def write() -> None:
        await unpack_keys(table)
        entries = [(uid, row_id, table.get(uid, _NO_KEYS)) for uid, row_id in held]
        try:
            await write_recorded(
                engine, account, mailbox_id, uidvalidity, entries_by_chunk(entries)
            )
        except CryptmailError as exc:  # the keys are in memory; the pass writes them later
            log.warning("sort key record of mailbox %d not written: %s", mailbox_id, exc)

    return write
