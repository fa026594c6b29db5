"""The segment rows of cm_fts_segments, and the blobs a user's messages use
(and which of their rows have no sealed cache yet).

Segments are only ever inserted whole or replaced whole: a merge deletes the rows it
read and inserts the result in one transaction, and rolls back when any of them is
already gone (another session merged them first), so no update is lost and a crash
leaves either the old segments or the new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.db import UserId, run_transaction
from cryptmail.db import tables as t
from cryptmail.errors import DatabaseConflict
from cryptmail.store._ids import BlobId, MessageId


class SegmentsChanged(DatabaseConflict):
    """Segments a merge read were replaced by another session meanwhile."""


async def list_segments(engine: AsyncEngine, user_id: UserId) -> list[int]:
    query = select(t.cm_fts_segments.c.id).where(t.cm_fts_segments.c.user_id == user_id)
    async with engine.connect() as conn:
        return [int(r[0]) for r in await conn.execute(query)]


async def load_segments(
    engine: AsyncEngine, user_id: UserId, ids: Sequence[int]
) -> dict[int, tuple[bytes, bytes]]:
    """{id: (name, sealed)} of those of `ids` still there."""
    found: dict[int, tuple[bytes, bytes]] = {}
    table = t.cm_fts_segments
    async with engine.connect() as conn:
        for start in range(0, len(ids), 50):
            query = select(table.c.id, table.c.name, table.c.sealed).where(
                table.c.user_id == user_id, table.c.id.in_(ids[start : start + 50])
            )
            for row_id, name, sealed in await conn.execute(query):
                found[int(row_id)] = (bytes(name), bytes(sealed))
    return found


def _insert(conn: Connection, user_id: UserId, name: bytes, sealed: bytes) -> int:
    result = conn.execute(
        insert(t.cm_fts_segments).values(user_id=user_id, name=name, sealed=sealed)
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]  # always set for one row


async def insert_segment(engine: AsyncEngine, user_id: UserId, name: bytes, sealed: bytes) -> int:
    return await run_transaction(
        engine, lambda conn: _insert(conn, user_id, name, sealed), retry=True
    )


async def replace_segments(
    engine: AsyncEngine, user_id: UserId, old: Sequence[int], name: bytes, sealed: bytes
) -> int:
    """Delete `old` and insert the merged segment in one transaction; SegmentsChanged
    (nothing written) when one of `old` is already gone."""

    def work(conn: Connection) -> int:
        table = t.cm_fts_segments
        gone = conn.execute(
            delete(table).where(table.c.user_id == user_id, table.c.id.in_(list(old)))
        )
        if gone.rowcount != len(old):
            raise SegmentsChanged("another session merged these search index segments first")
        return _insert(conn, user_id, name, sealed)

    # Two merges deleting overlapping segments can deadlock on MariaDB; run again, the
    # loser finds its segments gone and raises SegmentsChanged as if it had come second.
    return await run_transaction(engine, work, retry=True)


async def delete_segment(engine: AsyncEngine, user_id: UserId, segment_id: int) -> None:
    table = t.cm_fts_segments

    def work(conn: Connection) -> None:
        conn.execute(delete(table).where(table.c.user_id == user_id, table.c.id == segment_id))

    await run_transaction(engine, work, retry=True)


async def user_blobs(engine: AsyncEngine, user_id: UserId) -> dict[BlobId, bool]:
    """{blob id: sealed} of every message of the user, in any mailbox, newest first."""
    return (await user_messages(engine, user_id)).blobs


class UserMessages(NamedTuple):
    """What the background pass has to look at, newest message first (what a client
    shows first)."""

    blobs: dict[BlobId, bool]
    """{blob id: sealed} of every message of the user, in any mailbox."""
    uncached: dict[BlobId, list[MessageId]]
    """The rows of each blob that no session has read yet (no sealed cache)."""


async def user_messages(engine: AsyncEngine, user_id: UserId) -> UserMessages:
    m, b = t.cm_messages, t.cm_mailboxes
    query = (
        select(m.c.blob_id, m.c.sealed, m.c.id, m.c.cache_sealed.is_(None))
        .select_from(m.join(b, m.c.mailbox_id == b.c.id))
        .where(b.c.user_id == user_id)
        .order_by(m.c.id.desc())
    )
    blobs: dict[BlobId, bool] = {}
    uncached: dict[BlobId, list[MessageId]] = {}
    async with engine.connect() as conn:
        for blob, sealed, row_id, no_cache in await conn.execute(query):
            blob_id = BlobId(bytes(blob))
            blobs[blob_id] = bool(sealed)
            if no_cache:
                uncached.setdefault(blob_id, []).append(MessageId(int(row_id)))
    return UserMessages(blobs, uncached)
