"""Message rows as a session with the unlocked key sees them.

Flags and caches are sealed under the data key with the row id as context. A row with
flags_sealed NULL was delivered while nobody held the key: the first session that
selects its mailbox claims it (`claim_messages`, its first flags) without reading it,
and the first that reads it seals its cache (`save_cache`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from sqlalchemy import Connection, bindparam, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptmail.db import ChangeKind, record_mailbox_change, run_transaction
from cryptmail.db import tables as t
from cryptmail.keys import UnlockedAccount
from cryptmail.store._codec import (
    RECENT_FLAG as RECENT_FLAG,
)
from cryptmail.store._codec import (
    MessageCache,
    decode_flags,
    encode_flags,
    flags_context,
    round_size,
)
from cryptmail.store._ids import BlobId, MailboxId, MessageId
from cryptmail.store.blobs import BlobStore

if TYPE_CHECKING:
    from cryptmail.store._append import StoredBlob

FlagMode = Literal["set", "add", "remove"]


class MessageRow(NamedTuple):
    """One message as its mailbox lists it. A named tuple: SELECT builds one per message."""

    id: MessageId
    mailbox_id: MailboxId
    uid: int
    modseq: int
    blob_id: BlobId
    sealed: bool
    size_rounded: int
    internal_date: datetime
    flags: frozenset[str]
    indexed: bool
    """A session has sealed the message's cache (facts and key)."""
    claimed: bool = True
    """A session has given it its first flags: it is no longer new (\\Recent) to anyone."""
    saved_at: datetime | None = None
    """When it was saved into this mailbox (RFC 8514); None for rows older than that."""


_flags_context = flags_context


def _cache_context(row_id: int) -> bytes:
    return b"cache|" + str(row_id).encode()


_COLUMNS = (
    t.cm_messages.c.id,
    t.cm_messages.c.mailbox_id,
    t.cm_messages.c.uid,
    t.cm_messages.c.modseq,
    t.cm_messages.c.blob_id,
    t.cm_messages.c.sealed,
    t.cm_messages.c.size_rounded,
    t.cm_messages.c.internal_date,
    t.cm_messages.c.flags_sealed,
    t.cm_messages.c.cache_sealed.is_not(None).label("indexed"),
    t.cm_messages.c.saved_at,
)


def _row(r: Sequence[Any], account: UnlockedAccount) -> MessageRow:
    # Unpacked by position, in _COLUMNS order: SELECT runs this once per message.
    row_id, mailbox_id, uid, modseq, blob_id, sealed, size_rounded, when, flags, indexed, saved = r
    row_id = int(row_id)
    return MessageRow(
        MessageId(row_id),
        MailboxId(int(mailbox_id)),
        int(uid),
        int(modseq),
        BlobId(bytes(blob_id)),
        bool(sealed),
        int(size_rounded),
        when,
        decode_flags(account.fields.open(bytes(flags), _flags_context(row_id)))
        if flags is not None
        else frozenset(),
        bool(indexed),
        flags is not None,
        saved,
    )


async def load_messages(
    conn: AsyncConnection,
    account: UnlockedAccount,
    mailbox_id: MailboxId,
    *,
    since_modseq: int = 0,
    since_uid: int = 0,
) -> list[MessageRow]:
    """Rows of a mailbox in UID order, flags opened; only those changed after
    `since_modseq` or above `since_uid` when given (a session's incremental refresh)."""
    query = select(*_COLUMNS).where(t.cm_messages.c.mailbox_id == mailbox_id)
    if since_modseq:
        query = query.where(t.cm_messages.c.modseq > since_modseq)
    if since_uid:
        query = query.where(t.cm_messages.c.uid > since_uid)
    rows = await conn.execute(query.order_by(t.cm_messages.c.uid))
    return [_row(r, account) for r in rows]


async def load_rows(
    conn: AsyncConnection,
    account: UnlockedAccount,
    row_ids: Iterable[MessageId],
    mailbox_id: MailboxId | None = None,
) -> list[MessageRow]:
    """Rows by id, flags opened, in one query each 500 ids; expunged ones are left out,
    and with `mailbox_id` those no longer in that mailbox (RENAME of INBOX moves rows
    by changing their mailbox, keeping their ids)."""
    wanted = list(row_ids)
    found: list[MessageRow] = []
    for start in range(0, len(wanted), 500):
        query = select(*_COLUMNS).where(t.cm_messages.c.id.in_(wanted[start : start + 500]))
        if mailbox_id is not None:
            query = query.where(t.cm_messages.c.mailbox_id == mailbox_id)
        found += [_row(r, account) for r in await conn.execute(query)]
    return found


async def load_message(
    conn: AsyncConnection, account: UnlockedAccount, row_id: MessageId
) -> MessageRow | None:
    """One row by id, flags opened; None when it was expunged."""
    found = (await conn.execute(select(*_COLUMNS).where(t.cm_messages.c.id == row_id))).first()
    return None if found is None else _row(found, account)


async def load_cache(
    conn: AsyncConnection, account: UnlockedAccount, row_id: MessageId
) -> MessageCache | None:
    row = (
        await conn.execute(select(t.cm_messages.c.cache_sealed).where(t.cm_messages.c.id == row_id))
    ).first()
    if row is None or row.cache_sealed is None:
        return None
    return MessageCache.decode(account.fields.open(bytes(row.cache_sealed), _cache_context(row_id)))


async def load_caches(
    conn: AsyncConnection, account: UnlockedAccount, row_ids: Iterable[MessageId]
) -> dict[MessageId, MessageCache]:
    """The sealed caches of many rows in one query each 500 ids; rows without one are left out."""
    found: dict[MessageId, MessageCache] = {}
    wanted = list(row_ids)
    for start in range(0, len(wanted), 500):
        batch = wanted[start : start + 500]
        query = select(t.cm_messages.c.id, t.cm_messages.c.cache_sealed).where(
            t.cm_messages.c.id.in_(batch), t.cm_messages.c.cache_sealed.is_not(None)
        )
        for raw_id, sealed in await conn.execute(query):
            row_id = MessageId(int(raw_id))
            opened = account.fields.open(bytes(sealed), _cache_context(row_id))
            found[row_id] = MessageCache.decode(opened)
    return found


async def save_cache(
    conn: AsyncConnection,
    account: UnlockedAccount,
    row: MessageRow,
    cache: MessageCache,
    *,
    initial_flags: frozenset[str] = frozenset({RECENT_FLAG}),
) -> None:
    """Seal the cache of a row; a row that has no flags yet also gets its first flags
    (\\Recent: it arrived while nobody looked). Does not change the modseq.

    The first flags are written only `WHERE flags_sealed IS NULL`, decided by the
    database and not by the session's copy of the row: another session may have
    stored flags since this one loaded it, and those must win.
    """
    await conn.run_sync(_save_cache, account, row, cache, initial_flags)


async def save_caches(
    engine: AsyncEngine,
    account: UnlockedAccount,
    caches: Sequence[tuple[MessageRow, MessageCache]],
    *,
    initial_flags: frozenset[str] = frozenset({RECENT_FLAG}),
) -> None:
    """`save_cache` for many rows in one transaction (on SQLite, one worker call)."""

    def work(conn: Connection) -> None:
        for row, cache in caches:
            _save_cache(conn, account, row, cache, initial_flags)

    await run_transaction(engine, work, retry=True)


_FILL = (
    update(t.cm_messages)
    .where(
        t.cm_messages.c.id == bindparam("row_id"),
        t.cm_messages.c.blob_id == bindparam("read_blob"),
        t.cm_messages.c.cache_sealed.is_(None),
    )
    .values(cache_sealed=bindparam("new_cache"))
)


async def fill_caches(
    engine: AsyncEngine,
    account: UnlockedAccount,
    caches: Sequence[tuple[MessageId, BlobId, MessageCache]],
) -> None:
    """Seal caches made ahead of any reader (the background pass), in one transaction.

    Each is written only where the row has no cache yet and still uses the blob it was
    made from (`mailbox encrypt` may have given it another since): a session's own
    cache wins. First flags are left alone: the row stays \\Recent for the session that
    selects its mailbox first.
    """
    params = [
        {
            "row_id": row_id,
            "read_blob": blob_id,
            "new_cache": account.fields.seal(cache.encode(), _cache_context(row_id)),
        }
        # In row id order, the order EXPUNGE and flag changes lock rows in: given in
        # another, this update and an EXPUNGE of the same rows deadlocked on MariaDB
        # (1213; retried, but each one costs a rollback and a pause).
        for row_id, blob_id, cache in sorted(caches, key=lambda c: c[0])
    ]

    def work(conn: Connection) -> None:
        if params:
            conn.execute(_FILL, params)

    await run_transaction(engine, work, retry=True)


def _save_cache(
    conn: Connection,
    account: UnlockedAccount,
    row: MessageRow,
    cache: MessageCache,
    initial_flags: frozenset[str],
) -> None:
    msg = t.cm_messages
    conn.execute(
        update(msg)
        .where(msg.c.id == row.id)
        .values(cache_sealed=account.fields.seal(cache.encode(), _cache_context(row.id)))
    )
    if row.claimed:
        return
    conn.execute(
        update(msg)
        .where(msg.c.id == row.id, msg.c.flags_sealed.is_(None))
        .values(
            flags_sealed=account.fields.seal(
                encode_flags(row.flags | initial_flags), _flags_context(row.id)
            )
        )
    )


_CLAIM = (
    update(t.cm_messages)
    .where(t.cm_messages.c.id == bindparam("row_id"), t.cm_messages.c.flags_sealed.is_(None))
    .values(flags_sealed=bindparam("first_flags"))
)


async def claim_messages(
    engine: AsyncEngine,
    account: UnlockedAccount,
    rows: Sequence[MessageRow],
    flags: frozenset[str] = frozenset(),
) -> None:
    """Give rows that nobody has seen their first flags, in one transaction, reading
    no blob and taking no new modseq (their flags are those they arrived with).

    Written only `WHERE flags_sealed IS NULL`: a session that stored flags first wins.
    One prepared statement for every row: a SELECT may claim 50,000 of them.
    """
    params = [
        {
            "row_id": row.id,
            "first_flags": account.fields.seal(
                encode_flags(row.flags | flags), _flags_context(row.id)
            ),
        }
        for row in rows
    ]

    def work(conn: Connection) -> None:
        if params:
            conn.execute(_CLAIM, params)

    await run_transaction(engine, work, retry=True)


class AppendItem(NamedTuple):
    """One message of an IMAP APPEND, its blob written: what its row is made of."""

    blob: StoredBlob
    internal_date: datetime
    cache: MessageCache
    flags: frozenset[str]
    """Its first flags (APPEND gives \\Recent with the client's)."""


async def append_rows(
    engine: AsyncEngine,
    account: UnlockedAccount,
    mailbox_id: MailboxId,
    items: Sequence[AppendItem],
    *,
    message_limit: int = 0,
) -> list[tuple[int, int, int]]:
    """APPEND's commit: the quota check (`message_limit` messages in all, 0 = none),
    then each row with its sealed cache and first flags, in one transaction; (row id,
    uid, modseq) of each. On SQLite it waits its turn in the writers' queue
    (`run_transaction`), not in SQLite's busy handler, which sleeps up to 100 ms at a
    time while the lock may long be free.
    Raises QuotaExceeded."""
    from cryptmail.store._append import _check_quota, _insert_row

    def work(conn: Connection) -> list[tuple[int, int, int]]:
        # Each row counts its own padded size (as _insert_row adds it to used_bytes),
        # not the padded total: a MULTIAPPEND must not pass the quota by its rounding.
        _check_quota(
            conn,
            account.user,
            sum(round_size(item.blob.size) for item in items),
            messages=len(items),
            message_limit=message_limit,
        )
        done = []
        for item in items:
            row_id, uid, modseq = _insert_row(conn, mailbox_id, item.blob, item.internal_date)
            row = MessageRow(
                id=MessageId(row_id), mailbox_id=mailbox_id, uid=uid, modseq=modseq,
                blob_id=item.blob.blob_id, sealed=item.blob.sealed, size_rounded=0,
                internal_date=item.internal_date, flags=frozenset(), indexed=False,
                claimed=False,
            )  # fmt: skip
            _save_cache(conn, account, row, item.cache, item.flags)
            done.append((row_id, uid, modseq))
        return done

    return await run_transaction(engine, work, retry=True)


async def _bump_modseq(conn: AsyncConnection, mailbox_id: MailboxId) -> int:
    mb = t.cm_mailboxes
    await conn.execute(
        update(mb).where(mb.c.id == mailbox_id).values(highest_modseq=mb.c.highest_modseq + 1)
    )
    row = (await conn.execute(select(mb.c.highest_modseq).where(mb.c.id == mailbox_id))).one()
    await conn.run_sync(record_mailbox_change, mailbox_id, ChangeKind.FLAGS)
    return int(row.highest_modseq)


async def set_flags(
    conn: AsyncConnection,
    account: UnlockedAccount,
    mailbox_id: MailboxId,
    changes: Mapping[MessageId, frozenset[str]],
) -> int:
    """Store new flag sets for rows of one mailbox; all get one new modseq (returned)."""
    if not changes:
        return 0
    modseq = await _bump_modseq(conn, mailbox_id)
    for row_id, flags in changes.items():
        await conn.execute(
            update(t.cm_messages)
            .where(t.cm_messages.c.id == row_id, t.cm_messages.c.mailbox_id == mailbox_id)
            .values(
                flags_sealed=account.fields.seal(encode_flags(flags), _flags_context(row_id)),
                modseq=modseq,
            )
        )
    return modseq


class FlagUpdate(NamedTuple):
    """What `change_flags` did, read and decided under the rows' lock."""

    modseq: int
    """The new modseq of the rows that changed; 0 when none did."""
    changed: dict[MessageId, frozenset[str]]
    """The stored flags of the rows that changed, as written."""
    modified: list[MessageId]
    """Rows left alone because they changed after UNCHANGEDSINCE."""
    gone: list[MessageId]
    """Rows no longer in the mailbox (another session expunged or moved them)."""


def _apply(mode: FlagMode, stored: frozenset[str], given: frozenset[str]) -> frozenset[str]:
    if mode == "add":
        return stored | given
    if mode == "remove":
        return stored - given
    # A replacement keeps \Recent: it marks a row no session has claimed, not a flag.
    return given | (stored & {RECENT_FLAG})


async def change_flags(
    engine: AsyncEngine,
    account: UnlockedAccount,
    mailbox_id: MailboxId,
    row_ids: Sequence[MessageId],
    mode: FlagMode,
    flags: frozenset[str],
    *,
    unchanged_since: int | None = None,
) -> FlagUpdate:
    """Add (`mode` "add"), remove ("remove") or replace ("set") flags of rows of one
    mailbox, as one transaction that reads each row's stored flags under its lock,
    applies the change and writes the rows that changed with one new modseq.

    Never from a session's copy of the flags: another session may have changed them
    since it loaded them, and writing a set computed from that copy would undo it.
    UNCHANGEDSINCE is checked against the stored modseq (RFC 7162 3.1.3).
    """
    wanted = list(dict.fromkeys(row_ids))
    if not wanted:
        return FlagUpdate(0, {}, [], [])

    def work(conn: Connection) -> FlagUpdate:
        mb, msg = t.cm_mailboxes, t.cm_messages
        # The mailbox row first, as expunge and delivery take it: no lock-order cycle.
        conn.execute(select(mb.c.highest_modseq).where(mb.c.id == mailbox_id).with_for_update())
        stored: dict[MessageId, tuple[int, frozenset[str]]] = {}
        for start in range(0, len(wanted), 500):
            query = (
                select(msg.c.id, msg.c.modseq, msg.c.flags_sealed)
                .where(msg.c.id.in_(wanted[start : start + 500]), msg.c.mailbox_id == mailbox_id)
                .with_for_update()
            )
            for raw_id, modseq, sealed in conn.execute(query):
                row_id = MessageId(int(raw_id))
                opened = (
                    decode_flags(account.fields.open(bytes(sealed), _flags_context(row_id)))
                    if sealed is not None
                    else frozenset()
                )
                stored[row_id] = (int(modseq), opened)
        changed: dict[MessageId, frozenset[str]] = {}
        modified: list[MessageId] = []
        for row_id in wanted:
            if row_id not in stored:
                continue
            modseq, current = stored[row_id]
            if unchanged_since is not None and modseq > unchanged_since:
                modified.append(row_id)
                continue
            new = _apply(mode, current, flags)
            if new != current:
                changed[row_id] = new
        gone = [row_id for row_id in wanted if row_id not in stored]
        if not changed:
            return FlagUpdate(0, changed, modified, gone)
        conn.execute(
            update(mb).where(mb.c.id == mailbox_id).values(highest_modseq=mb.c.highest_modseq + 1)
        )
        new_modseq = int(
            conn.execute(select(mb.c.highest_modseq).where(mb.c.id == mailbox_id)).scalar_one()
        )
        record_mailbox_change(conn, mailbox_id, ChangeKind.FLAGS)
        conn.execute(
            update(msg)
            .where(msg.c.id == bindparam("row_id"))
            .values(flags_sealed=bindparam("new_flags"), modseq=new_modseq),
            [
                {
                    "row_id": row_id,
                    "new_flags": account.fields.seal(encode_flags(new), _flags_context(row_id)),
                }
                for row_id, new in changed.items()
            ],
        )
        return FlagUpdate(new_modseq, changed, modified, gone)

    return await run_transaction(engine, work, retry=True)


async def expunge(
    conn: AsyncConnection, mailbox_id: MailboxId, rows: Sequence[MessageRow]
) -> tuple[int, list[BlobId]]:
    """Remove rows; remember their UIDs for QRESYNC. Returns the modseq and the blob ids
    to check with `unreferenced_blobs` after commit.

    A row another session expunged (or moved) already is skipped: expunging it again is
    no error, and its UID is already remembered."""
    return await conn.run_sync(_expunge, mailbox_id, rows)


async def expunge_messages(
    engine: AsyncEngine, mailbox_id: MailboxId, rows: Sequence[MessageRow]
) -> tuple[int, list[BlobId]]:
    """`expunge` as a transaction of its own. On SQLite it then waits its turn in the
    writers' queue (`run_transaction`) instead of in SQLite's busy handler, which sleeps
    up to 100 ms at a time while the lock may long be free."""
    return await run_transaction(engine, lambda conn: _expunge(conn, mailbox_id, rows), retry=True)


def _expunge(
    conn: Connection, mailbox_id: MailboxId, rows: Sequence[MessageRow]
) -> tuple[int, list[BlobId]]:
    if not rows:
        return 0, []
    msg, mb = t.cm_messages, t.cm_mailboxes
    # A write first: it takes the mailbox row's lock (SQLite: the write lock), so the
    # rows read next are the latest and no other expunge of them can commit meanwhile.
    conn.execute(
        update(mb).where(mb.c.id == mailbox_id).values(highest_modseq=mb.c.highest_modseq + 1)
    )
    modseq = int(
        conn.execute(select(mb.c.highest_modseq).where(mb.c.id == mailbox_id)).scalar_one()
    )
    wanted = [r.id for r in rows]
    present: set[int] = set()
    for start in range(0, len(wanted), 500):
        found = conn.execute(
            select(msg.c.id)
            .where(msg.c.id.in_(wanted[start : start + 500]), msg.c.mailbox_id == mailbox_id)
            .with_for_update()
        )
        present.update(int(r.id) for r in found)
    rows = [r for r in rows if r.id in present]
    if not rows:
        return modseq, []
    record_mailbox_change(conn, mailbox_id, ChangeKind.EXPUNGE)
    ids = [r.id for r in rows]
    freed = (
        select(func.coalesce(func.sum(msg.c.size_rounded), 0))
        .where(msg.c.id.in_(ids), msg.c.mailbox_id == mailbox_id)
        .scalar_subquery()
    )
    conn.execute(
        update(mb)
        .where(mb.c.id == mailbox_id)
        .values(used_bytes=mb.c.used_bytes - freed, message_count=mb.c.message_count - len(ids))
    )
    conn.execute(delete(t.cm_messages).where(t.cm_messages.c.id.in_(ids)))
    conn.execute(
        t.cm_expunged.insert(),
        [{"mailbox_id": mailbox_id, "uid": r.uid, "modseq": modseq} for r in rows],
    )
    return modseq, [r.blob_id for r in rows]


async def unreferenced_blobs(conn: AsyncConnection, blob_ids: Iterable[BlobId]) -> list[BlobId]:
    wanted = list(set(blob_ids))
    if not wanted:
        return []
    rows = await conn.execute(
        select(t.cm_messages.c.blob_id).where(t.cm_messages.c.blob_id.in_(wanted))
    )
    used = {bytes(r.blob_id) for r in rows}
    return [b for b in wanted if b not in used]


async def copy_messages(
    conn: AsyncConnection,
    account: UnlockedAccount,
    rows: Sequence[MessageRow],
    target: MailboxId,
) -> list[tuple[int, int]]:
    """Copy rows to `target` sharing their blobs (no re-encryption). Returns
    (source uid, new uid) pairs; a row expunged meanwhile is left out. Flags (as stored
    at the copy) and cache are resealed for the new rows.

    The blob id, sealed mark and size come from the source row as it is now, read under
    a lock, never from `rows`: `mailbox encrypt` may have swapped the blob and deleted
    the old one since the session loaded them.
    """
    from cryptmail.store._append import StoredBlob, insert_row

    mb = t.cm_mailboxes
    msg = t.cm_messages
    # A write first: SQLite then holds its write lock, so the reads below see the latest
    # commit and no swap can land before ours does (elsewhere FOR UPDATE does that).
    await conn.execute(update(mb).where(mb.c.id == target).values(uidnext=mb.c.uidnext))
    pairs: list[tuple[int, int]] = []
    for row in rows:
        source = (
            await conn.execute(
                select(msg.c.blob_id, msg.c.sealed, msg.c.size_rounded, msg.c.flags_sealed)
                .where(msg.c.id == row.id)
                .with_for_update()
            )
        ).first()
        if source is None:
            continue
        # The flags as stored now, not the session's copy: another session may have
        # changed them since this one loaded the row (RFC 3501: COPY keeps the flags).
        flags = (
            decode_flags(account.fields.open(bytes(source.flags_sealed), _flags_context(row.id)))
            if source.flags_sealed is not None
            else row.flags
        )
        cache = await load_cache(conn, account, row.id)
        blob = StoredBlob(
            BlobId(bytes(source.blob_id)), int(source.size_rounded), bool(source.sealed), None
        )
        new_id, uid, _modseq = await insert_row(conn, target, blob, row.internal_date)
        await conn.execute(
            update(msg)
            .where(msg.c.id == new_id)
            .values(
                size_rounded=blob.size,
                flags_sealed=account.fields.seal(
                    encode_flags(flags | {RECENT_FLAG}), _flags_context(new_id)
                ),
                cache_sealed=(
                    account.fields.seal(cache.encode(), _cache_context(new_id)) if cache else None
                ),
            )
        )
        pairs.append((row.uid, uid))
    return pairs


async def move_messages(
    conn: AsyncConnection,
    account: UnlockedAccount,
    rows: Sequence[MessageRow],
    source: MailboxId,
    target: MailboxId,
) -> tuple[list[tuple[int, int]], int, list[BlobId]]:
    """MOVE (RFC 6851): copy rows to `target`, then expunge them from `source`, in the
    caller's transaction. Returns the (source uid, new uid) pairs, the source's new
    modseq and the blob ids to check with `unreferenced_blobs` after commit.

    Both mailbox rows are locked first, lower id first. Otherwise the copy holds the
    source's message rows while the expunge waits for the source's mailbox row, which
    a flag change or expunge there holds while it waits for those message rows; and two
    MOVEs in opposite directions would take the two mailbox rows in opposite order.
    MariaDB and PostgreSQL end such a cycle by failing one of them as a deadlock victim.
    """
    mb = t.cm_mailboxes
    for mailbox_id in sorted({source, target}):
        await conn.execute(update(mb).where(mb.c.id == mailbox_id).values(uidnext=mb.c.uidnext))
    pairs = await copy_messages(conn, account, rows, target)
    modseq, blob_ids = await expunge(conn, source, rows)
    return pairs, modseq, blob_ids


async def drop_unreferenced_blobs(
    engine: AsyncEngine, blobs: BlobStore, blob_ids: Iterable[BlobId]
) -> list[BlobId]:
    """Delete those of `blob_ids` that no row names, checked after the commit that freed
    them (a COPY may share a blob). Returns the ids deleted."""
    async with engine.begin() as conn:
        unused = await unreferenced_blobs(conn, blob_ids)
        for blob_id in unused:
            await blobs.delete(blob_id)
    return unused


async def vanished_since(conn: AsyncConnection, mailbox_id: MailboxId, modseq: int) -> list[int]:
    rows = await conn.execute(
        select(t.cm_expunged.c.uid)
        .where(t.cm_expunged.c.mailbox_id == mailbox_id, t.cm_expunged.c.modseq > modseq)
        .order_by(t.cm_expunged.c.uid)
    )
    return [int(r.uid) for r in rows]


class MailboxState(NamedTuple):
    """A mailbox's counters as of one moment (`mailbox_state`)."""

    messages: int
    unclaimed: int
    uidnext: int
    highest_modseq: int


def _state_query(mailbox_id: MailboxId) -> Any:
    mb, msg = t.cm_mailboxes, t.cm_messages
    in_box = msg.c.mailbox_id == mb.c.id  # correlated to the mailbox row below
    unclaimed = func.coalesce(func.sum(case((msg.c.flags_sealed.is_(None), 1), else_=0)), 0)
    return select(
        select(func.count()).where(in_box).scalar_subquery(),
        select(unclaimed).where(in_box).scalar_subquery(),
        mb.c.uidnext,
        mb.c.highest_modseq,
    ).where(mb.c.id == mailbox_id)


async def mailbox_state(conn: AsyncConnection, mailbox_id: MailboxId) -> MailboxState | None:
    """The mailbox's message count, unclaimed count, UIDNEXT and HIGHESTMODSEQ in one
    statement, so from one snapshot; None if the mailbox is gone.

    Read in two statements outside a transaction (a connection outside `run_transaction`
    runs each in its own on SQLite), a delivery committing between them gave STATUS
    answers such as MESSAGES 2 UIDNEXT 2, which no mailbox can have.
    """
    row = (await conn.execute(_state_query(mailbox_id))).one_or_none()
    if row is None:
        return None
    return MailboxState(int(row[0]), int(row[1] or 0), int(row[2]), int(row[3]))


async def mailbox_counts(conn: AsyncConnection, mailbox_id: MailboxId) -> tuple[int, int]:
    """(messages, messages no session has claimed yet): the latter approximates RECENT."""
    row = (
        await conn.execute(
            select(
                func.count(),
                func.sum(case((t.cm_messages.c.flags_sealed.is_(None), 1), else_=0)),
            ).where(t.cm_messages.c.mailbox_id == mailbox_id)
        )
    ).one()
    return int(row[0]), int(row[1] or 0)
