"""Blobs read ahead of a FETCH over many messages: whole when they are small enough.

Reading a blob from the page cache takes a few microseconds per 4 KB; the hop to a worker
thread and back takes far longer. So a FETCH of many message bodies asks the blob store
for a whole batch at once (`BlobStore.read_heads`, one hop), and asks for the next batch
while the current one is decrypted and written.

A blob whose message is under WHOLE_BELOW (by its row's rounded size) is read whole: its
body then needs no hop of its own, nor the one that asks for its size. Such batches are
cut at BUDGET bytes, so two batches in memory stay small. Bigger blobs come as their
first HEAD_SIZE bytes, as before; their bodies stream by range.

It is only a shortcut: when a batch cannot be read, its messages are read one by one as
before, and that read raises the error the command reports. A rounded size that lies
costs nothing but a head read instead of a whole one: a blob is taken as whole only when
the store returned fewer bytes than asked for.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Sequence
from typing import Final

from cryptmail.errors import StoreError
from cryptmail.store import HEAD_SIZE, BlobId
from cryptmail.store.blobs import BlobStore

BATCH: Final = 32
"""Blobs per read at most: 2 MiB of heads per batch, two batches held at a time."""
WHOLE_BELOW: Final = 1024 * 1024
"""A message whose rounded size is below this is read whole with its batch."""
BUDGET: Final = 2 * 1024 * 1024
"""Bytes of whole blobs one batch asks for at most (one blob alone may reach WHOLE_BELOW)."""
_SLACK: Final = 64 * 1024
"""Added to a rounded message size for the blob's header and chunk tags (16 bytes per
64 KiB chunk, under 1 KiB of header): a blob is then always shorter than asked for."""


def _batches(count: int, sizes: Sequence[int] | None) -> tuple[list[int], list[int]]:
    """Where each batch starts, and how many bytes each asks per blob."""
    starts: list[int] = []
    if sizes is None:
        starts = list(range(0, count, BATCH))
        return starts, [HEAD_SIZE] * len(starts)
    lengths: list[int] = []
    used = members = 0
    for position, size in enumerate(sizes):
        length = size + _SLACK if size + _SLACK <= WHOLE_BELOW else HEAD_SIZE
        whole = length != HEAD_SIZE
        same_kind = bool(starts) and (lengths[-1] != HEAD_SIZE) == whole
        fits = members < BATCH and (not whole or used + length <= BUDGET)
        if same_kind and fits:
            members += 1
            used += length
            lengths[-1] = max(lengths[-1], length) if whole else HEAD_SIZE
            continue
        starts.append(position)
        lengths.append(length)
        used, members = length, 1
    return starts, lengths


class HeadReadAhead:
    """The heads (or whole blobs) of `blob_ids`, to be asked for in order by position.

    `sizes`, the rows' rounded message sizes in the same order, lets small blobs come
    whole; without it every blob comes as its first HEAD_SIZE bytes.
    """

    def __init__(
        self, blobs: BlobStore, blob_ids: Sequence[BlobId], sizes: Sequence[int] | None = None
    ) -> None:
        if sizes is not None and len(sizes) != len(blob_ids):
            raise ValueError("HeadReadAhead needs one size per blob id")
        self._blobs = blobs
        self._ids = blob_ids
        self._starts, self._lengths = _batches(len(blob_ids), sizes)
        self._heads: dict[BlobId, bytes] = {}
        self._batch = -1
        self._pending: asyncio.Task[dict[BlobId, bytes]] | None = None

    def _start(self, batch: int) -> asyncio.Task[dict[BlobId, bytes]] | None:
        if batch >= len(self._starts):
            return None
        end = self._starts[batch + 1] if batch + 1 < len(self._starts) else len(self._ids)
        ids = self._ids[self._starts[batch] : end]
        return asyncio.ensure_future(self._blobs.read_heads(ids, self._lengths[batch]))

    async def head(self, position: int) -> bytes | None:
        """The first bytes of blob number `position` (all of it when `whole` says so),
        or None when they could not be read ahead (the caller then reads it itself)."""
        batch = bisect.bisect_right(self._starts, position) - 1
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

    def whole(self, position: int, head: bytes) -> bool:
        """Whether `head`, as `head(position)` returned it, is the whole blob: the store
        gave fewer bytes than the batch asked for."""
        batch = bisect.bisect_right(self._starts, position) - 1
        return len(head) < self._lengths[batch]

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
