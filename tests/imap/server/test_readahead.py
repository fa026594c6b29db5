"""HeadReadAhead: heads in batches, the next batch asked for early, failures fall back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from cryptmail.errors import StoreUnavailable
from cryptmail.imap.server._readahead import BATCH, BUDGET, WHOLE_BELOW, HeadReadAhead
from cryptmail.store import HEAD_SIZE, BlobId, new_blob_id
from cryptmail.store.blobs import LocalBlobStore


class CountingStore(LocalBlobStore):
    """A local store that records each read_heads call and can be made to fail."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[int] = []
        self.failing = False

    async def read_heads(self, blob_ids: Sequence[BlobId], length: int) -> dict[BlobId, bytes]:
        self.calls.append(len(blob_ids))
        if self.failing:
            raise StoreUnavailable("the blob store is down")
        return await super().read_heads(blob_ids, length)


async def _blobs(store: LocalBlobStore, count: int) -> list[BlobId]:
    ids = []
    for index in range(count):
        blob_id = new_blob_id()
        writer = await store.create(blob_id)
        await writer.write(b"%d" % index * (HEAD_SIZE if index == 1 else 3))
        await writer.commit()
        ids.append(blob_id)
    return ids


async def test_heads_come_in_order_one_batch_ahead(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    ids = await _blobs(store, 2 * BATCH + 1)
    missing = new_blob_id()
    ahead = HeadReadAhead(store, [*ids, missing])
    assert await ahead.head(0) == b"000"
    assert await ahead.head(1) == b"1" * HEAD_SIZE  # cut at HEAD_SIZE
    assert store.calls == [BATCH, BATCH]  # the second batch was asked for with the first
    for position in range(2, 2 * BATCH + 1):
        assert await ahead.head(position) == b"%d" % position * 3
    assert await ahead.head(2 * BATCH + 1) is None  # missing: the caller reads it itself
    assert store.calls == [BATCH, BATCH, 2]
    ahead.close()


async def test_a_jump_drops_the_batch_read_ahead(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    ids = await _blobs(store, 3 * BATCH)
    ahead = HeadReadAhead(store, ids)
    assert await ahead.head(0) == b"000"
    assert await ahead.head(2 * BATCH) == b"%d" % (2 * BATCH) * 3
    assert await ahead.head(1) == b"1" * HEAD_SIZE
    ahead.close()


async def test_a_failing_store_gives_none_and_close_cancels(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    ids = await _blobs(store, BATCH + 1)
    store.failing = True
    ahead = HeadReadAhead(store, ids)
    assert await ahead.head(0) is None
    store.failing = False
    assert await ahead.head(BATCH) is None  # its batch was asked for while failing
    ahead.close()
    ahead = HeadReadAhead(store, ids)
    assert await ahead.head(0) == b"000"
    pending = ahead._pending
    ahead.close()
    await asyncio.sleep(0)
    assert pending is not None and (pending.cancelled() or pending.done())


async def _sized(store: LocalBlobStore, sizes: list[int]) -> list[BlobId]:
    ids = []
    for index, size in enumerate(sizes):
        blob_id = new_blob_id()
        writer = await store.create(blob_id)
        await writer.write(bytes([index % 256]) * size)
        await writer.commit()
        ids.append(blob_id)
    return ids


async def test_small_enough_blobs_come_whole_in_batches_cut_at_the_budget(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    big = WHOLE_BELOW + 1  # past the limit: only its head, in a batch of heads
    sizes = [200_000] * 12 + [big, big] + [4096] * 3
    ids = await _sized(store, sizes)
    ahead = HeadReadAhead(store, ids, [-(-s // 4096) * 4096 for s in sizes])
    for position, size in enumerate(sizes):
        head = await ahead.head(position)
        assert head is not None
        if size == big:
            assert head == bytes([position]) * HEAD_SIZE
            assert not ahead.whole(position, head)
        else:
            assert head == bytes([position]) * size
            assert ahead.whole(position, head)
    # 200 KB blobs (plus slack) fill a batch of BUDGET bytes; the heads of big blobs and
    # the small blobs after them are batches of their own kind.
    per_batch = BUDGET // (200_704 + 64 * 1024)
    assert per_batch == 7
    assert store.calls == [per_batch, 12 - per_batch, 2, 3]
    ahead.close()


async def test_a_size_that_lies_gives_a_head_not_a_whole_blob(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    ids = await _sized(store, [300_000])
    ahead = HeadReadAhead(store, ids, [4096])  # the row says 4 KB; the blob is 300 KB
    head = await ahead.head(0)
    assert head is not None and len(head) < 300_000
    assert not ahead.whole(0, head)  # so the reader asks the store for the rest
    ahead.close()
