"""Behaviours every blob backend keeps; each backend's tests run them on a live store."""

from __future__ import annotations

import pytest

from cryptmail.errors import BlobMissing
from cryptmail.store import BlobId, new_blob_id
from cryptmail.store.blobs import BlobStore


async def committed_blobs(blobs: BlobStore, count: int) -> list[BlobId]:
    """`count` one-byte blobs, committed; their ids."""
    ids = []
    for _ in range(count):
        blob_id = new_blob_id()
        writer = await blobs.create(blob_id)
        await writer.write(b"x")
        await writer.commit()
        ids.append(blob_id)
    return ids


async def missing_blob_raises_blob_missing(blobs: BlobStore) -> None:
    blob_id = new_blob_id()
    with pytest.raises(BlobMissing, match=blob_id.hex()):
        await blobs.read(blob_id)
    with pytest.raises(BlobMissing):
        await blobs.read(blob_id, 5, 0)
    with pytest.raises(BlobMissing):
        await blobs.size(blob_id)
    with pytest.raises(BlobMissing):
        await blobs.modified_at(blob_id)
    with pytest.raises(BlobMissing):
        [piece async for piece in blobs.stream(blob_id)]


async def small_blob_commits_and_abort_leaves_nothing(blobs: BlobStore) -> BlobId:
    """Commits one small blob and aborts another; returns the id of the one kept."""
    kept, dropped = new_blob_id(), new_blob_id()
    writer = await blobs.create(kept)
    await writer.write(b"small")
    assert await writer.commit() == 5
    assert await blobs.read(kept) == b"small"
    writer = await blobs.create(dropped)
    await writer.write(b"never kept")
    await writer.abort()
    with pytest.raises(BlobMissing):
        await blobs.read(dropped)
    assert [b async for b in blobs.list_ids()] == [kept]
    return kept


async def read_heads_gives_prefixes_and_leaves_out_missing_blobs(blobs: BlobStore) -> None:
    short, long_, missing = new_blob_id(), new_blob_id(), new_blob_id()
    for blob_id, data in ((short, b"abc"), (long_, b"x" * 100 + b"y" * 100)):
        writer = await blobs.create(blob_id)
        await writer.write(data)
        await writer.commit()
    heads = await blobs.read_heads([short, missing, long_], 100)
    assert heads == {short: b"abc", long_: b"x" * 100}
    assert await blobs.read_heads([], 100) == {}
