"""Sort key records: a mailbox's SORT/THREAD keys, sealed in chunks of UIDs.

    row    = (mailbox id, chunk, uidvalidity, sealed); chunk = uid // SORT_CHUNK_UIDS
    sealed = FieldCipher.seal(u32(len(z)) || z || 0x00 * pad,
                              context("sort-chunk", user id, mailbox id, uidvalidity, chunk))
    z      = zlib(payload)

What the payload holds is the reader's business (`imap/message/_sortrecord.py`): the
store seals and pads it and keeps the rows. The context binds a chunk to its user,
mailbox, UIDVALIDITY and UID range, so a row moved elsewhere does not open; the padding
(the search index segments' rule) leaves the size telling about
how many messages a chunk covers, which the message rows tell anyway.

A chunk is only ever replaced whole (delete and insert in one transaction), by whoever
knows more keys of its UIDs: the entries are facts about immutable messages, so a
lost race loses entries (done the slow way, written again later), never makes one wrong.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Collection, Mapping
from typing import Final

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.crypto import context
from cryptmail.db import UserId, run_transaction
from cryptmail.db import tables as t
from cryptmail.errors import MalformedObject
from cryptmail.keys import UnlockedAccount
from cryptmail.store._ids import MailboxId
from cryptmail.store._sortentries import drop_folded, drop_spent_epochs

SORT_CHUNK_UIDS: Final = 2048
"""UIDs per chunk: new mail rewrites the last chunk only (a few hundred KB at most)."""
_LABEL: Final = "sort-chunk"


def _padded_size(size: int) -> int:
    """4 KiB steps below 64 KiB, then 1/16 of the next power of two (as `fulltext`'s
    segments; not imported from there: the store's top level does not depend on it)."""
    if size <= 64 * 1024:
        return -(-size // 4096) * 4096
    step = (1 << (size - 1).bit_length()) // 16
    return -(-size // step) * step


def sort_chunk_of(uid: int) -> int:
    """The chunk that holds ``uid``'s keys."""
    return uid // SORT_CHUNK_UIDS


def _context(
    account: UnlockedAccount, mailbox_id: MailboxId, uidvalidity: int, chunk: int
) -> bytes:
    return context(_LABEL, account.user.id, mailbox_id, uidvalidity, chunk)


def seal_sort_chunk(
    account: UnlockedAccount, mailbox_id: MailboxId, uidvalidity: int, chunk: int, payload: bytes
) -> bytes:
    """The sealed row value of one chunk (CPU work: call it off the event loop)."""
    packed = zlib.compress(payload, 6)
    plain = struct.pack(">I", len(packed)) + packed
    plain += bytes(_padded_size(len(plain)) - len(plain))
    return account.fields.seal(plain, _context(account, mailbox_id, uidvalidity, chunk))


def open_sort_chunk(
    account: UnlockedAccount, mailbox_id: MailboxId, uidvalidity: int, chunk: int, sealed: bytes
) -> bytes:
    """The payload; DecryptionFailed (another key, user, mailbox or chunk, or changed)
    or MalformedObject (bad length or padding, or it does not decompress)."""
    plain = account.fields.open(sealed, _context(account, mailbox_id, uidvalidity, chunk))
    if len(plain) < 4:
        raise MalformedObject(f"sort chunk {chunk} of mailbox {mailbox_id} is truncated")
    (size,) = struct.unpack_from(">I", plain)
    if 4 + size > len(plain) or plain.count(0, 4 + size) != len(plain) - 4 - size:
        raise MalformedObject(f"sort chunk {chunk} of mailbox {mailbox_id} has a bad length")
    try:
        return zlib.decompress(plain[4 : 4 + size])
    except zlib.error as exc:
        raise MalformedObject(
            f"sort chunk {chunk} of mailbox {mailbox_id} does not decompress"
        ) from exc


async def load_sort_chunks(
    engine: AsyncEngine,
    mailbox_id: MailboxId,
    uidvalidity: int,
    chunks: Collection[int] | None = None,
) -> dict[int, bytes]:
    """{chunk: sealed} of the mailbox's chunks under this UIDVALIDITY (only ``chunks``
    when given), still sealed: open each with `open_sort_chunk`."""
    table = t.cm_sort_chunks
    query = select(table.c.chunk, table.c.sealed).where(
        table.c.mailbox_id == mailbox_id, table.c.uidvalidity == uidvalidity
    )
    if chunks is not None:
        if not chunks:
            return {}
        query = query.where(table.c.chunk.in_(sorted(chunks)))

    def work(conn: Connection) -> dict[int, bytes]:
        return {int(chunk): bytes(sealed) for chunk, sealed in conn.execute(query)}

    return await run_transaction(engine, work, writes=False)


async def save_sort_chunks(
    engine: AsyncEngine,
    mailbox_id: MailboxId,
    uidvalidity: int,
    sealed: Mapping[int, bytes],
    *,
    folded: tuple[UserId, Collection[int]] | None = None,
) -> None:
    """Replace these chunks of the mailbox (sealed by `seal_sort_chunk`), and drop any
    left from another UIDVALIDITY, in one transaction; with ``folded`` (user id, row
    ids whose keys the chunks hold), delete those rows' delivery sort entries in it."""
    if not sealed:
        return
    table = t.cm_sort_chunks

    def work(conn: Connection) -> None:
        # The mailbox row's lock first, as EXPUNGE, MOVE and delivery take it first: the
        # entries deleted below are also deleted by an expunge's cascade, and on MariaDB
        # taking them before the mailbox (whose row the chunk's foreign key reads)
        # deadlocked with it.
        conn.execute(
            select(t.cm_mailboxes.c.id)
            .where(t.cm_mailboxes.c.id == mailbox_id)
            .with_for_update(key_share=True)
        )
        conn.execute(
            delete(table).where(
                table.c.mailbox_id == mailbox_id,
                table.c.chunk.in_(sorted(sealed)) | (table.c.uidvalidity != uidvalidity),
            )
        )
        conn.execute(
            insert(table),
            [
                {"mailbox_id": mailbox_id, "chunk": chunk, "uidvalidity": uidvalidity,
                 "sealed": value}
                for chunk, value in sorted(sealed.items())
            ],
        )  # fmt: skip
        if folded is not None:
            drop_folded(conn, folded[1])

    await run_transaction(engine, work, retry=True)
    if folded is not None:
        await drop_spent_epochs(engine, folded[0])
