"""Sort entries for imported messages, as delivery writes them (`_sortentries`).

Without them a user's first SORT after a migration reads and parses every imported
message. An import takes each sealed message's sort field record from its header
while the bytes pass to the blob (`SortHeader`: no second read of the file), holds it
in memory only, and writes the message's entry in the transaction that inserts the
row (`commit_batch`), under one `DeliveryEpochs` per import run wrapped to the
public key the blobs are sealed to: the entry needs no private key, so the imports
without a password get them too. A plain copy gets none, as in delivery. The epoch
is kept only once that transaction committed; a failed batch leaves neither rows
nor entries, and its rerun (the journal skips what committed) inserts new rows.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import Connection

from cryptmail.concurrency import run_blocking
from cryptmail.crypto import PublicKeyInfo
from cryptmail.db import UserId
from cryptmail.store._append import StoredBlob
from cryptmail.store._sortentries import DeliveryEpochs, EpochUse, SortFields, write_sort_entry
from cryptmail.store._sortfields import SortHeader

log = logging.getLogger(__name__)


async def tap_header(source: AsyncIterable[bytes], header: SortHeader) -> AsyncIterator[bytes]:
    """``source``'s pieces, unchanged, each shown to ``header`` on its way."""
    async for piece in source:
        header.feed(piece)
        yield piece


def sort_fields_of(epochs: DeliveryEpochs, header: SortHeader) -> SortFields | None:
    """What the message's entry is written from; None when its header is too long (it
    is sorted the slow way)."""
    record = header.record()
    return None if record is None else SortFields(epochs, record)


@dataclass(frozen=True, repr=False)
class BatchEntries:
    """The entries of one batch's sealed messages, made before its transaction."""

    use: EpochUse
    ready: list[bytes | None]
    """By position in the batch: the message's keys ready (None: no entry)."""

    def __repr__(self) -> str:
        return f"BatchEntries(entries={sum(r is not None for r in self.ready)})"

    def write(self, conn: Connection, rows: Sequence[tuple[int, StoredBlob]]) -> None:
        """In the batch's transaction, after its rows went in: the entry of each
        (row id, blob) the batch inserted, in the batch's order; the epoch with the
        first when it is new."""
        use = self.use
        for (row_id, blob), ready in zip(rows, self.ready, strict=True):
            if ready is None:
                continue
            write_sort_entry(conn, use, row_id, blob.blob_id, blob.size, ready)
            use = replace(use, row=None)  # one epoch row; the others only name it

    def keep(self) -> None:
        """Once the batch's transaction committed: the run's later batches seal under
        the same epoch."""
        self.use.epochs.keep(self.use)


def _prepare(
    user_id: UserId, recipient: PublicKeyInfo, batch: Sequence[tuple[StoredBlob, SortFields | None]]
) -> BatchEntries | None:
    ready: list[bytes | None] = []
    epochs: DeliveryEpochs | None = None
    for blob, fields in batch:
        if fields is None or not blob.sealed:
            ready.append(None)
            continue
        epochs = fields.epochs
        ready.append(fields.ready or None)
    if epochs is None or not any(ready):
        return None
    return BatchEntries(epochs.use(user_id, recipient), ready)


async def prepare_entries(
    user_id: UserId, recipient: PublicKeyInfo, batch: Sequence[tuple[StoredBlob, SortFields | None]]
) -> BatchEntries | None:
    """The entries of ``batch``'s sealed messages with a record, their keys made (off
    the event loop, not in the transaction) and their epoch chosen (a new one: one
    ECDH); None when there are none or they cannot be made (logged: an entry only
    saves work later, so its failure never fails the import)."""
    if not any(fields is not None and blob.sealed for blob, fields in batch):
        return None  # a plain import: no trip to a thread per batch
    try:
        return await run_blocking(_prepare, user_id, recipient, batch)
    except Exception as exc:  # the batch's messages are sorted the slow way
        log.warning("import for user id %d: no sort entries (%s)", user_id, type(exc).__name__)
        return None
