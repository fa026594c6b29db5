"""Blob heads read ahead of a FETCH over many messages.

Reading a 4 KB blob from the page cache takes a few microseconds; the hop to a worker
thread and back takes far longer. So a FETCH of many message bodies asks the blob store
for the heads of a whole batch at once (`BlobStore.read_heads`, one hop), and asks for
the next batch while the current one is decrypted and written.

It is only a shortcut: when a batch cannot be read, its messages are read one by one as
before, and that read raises the error the command reports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Final

from cryptmail.errors import StoreError
from cryptmail.store import HEAD_SIZE, BlobId
from cryptmail.store.blobs import BlobStore

BATCH: Final = 32
"""Blobs per read: at most 2 MiB of heads per batch, two batches held at a time."""


class HeadReadAhead:
    """The heads of `blob_ids`, to be asked for in order by position."""

    def __init__(self, blobs: BlobStore, blob_ids: Sequence[BlobId]) -> None:
        self._blobs = blobs
        self._ids = blob_ids
        self._heads: dict[BlobId, bytes] = {}
        self._batch = -1
        self._pending: asyncio.Task[dict[BlobId, bytes]] | None = None

    def _start(self, batch: int) -> asyncio.Task[dict[BlobId, bytes]] | None:
        ids = self._ids[batch * BATCH : (batch + 1) * BATCH]
        if not ids:
            return None
        return asyncio.ensure_future(self._blobs.read_heads(ids, HEAD_SIZE))

    async def head(self, position: int) -> bytes | None:
        """The first HEAD_SIZE bytes of blob number `position`, or None when they could
        not be read ahead (the caller then reads the blob itself)."""
        batch = position // BATCH
        if batch != self._batch:
            task = self._pending if self._batch == batch - 1 else None
            if task is None:
                self.close()
                task = self._start(batch)
            self._batch = batch
            self._pending = self._start(batch + 1)
            try:
                self._heads = await task if task is not None else {}
            except StoreError:
                self._heads = {}
        return self._heads.get(self._ids[position])

    def close(self) -> None:
        """Drop a batch still being read (the FETCH ended early)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if pending.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                pending.result()  # retrieved, so asyncio does not warn about it
        else:
            pending.cancel()
