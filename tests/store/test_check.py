"""store check: missing and malformed blobs reported, orphans kept within the grace."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

from cryptmail import store

from .conftest import StoreRig


async def _source(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _deliver(rig: StoreRig, count: int) -> list[store.Appended]:
    user = await rig.user("alice@example.org")
    return [
        await store.deliver_message(rig.engine, rig.blobs, user, _source(os.urandom(500)))
        for _ in range(count)
    ]


async def test_clean_store(rig: StoreRig) -> None:
    await _deliver(rig, 3)
    report = await store.check_store(rig.engine, rig.blobs, fix=True)
    assert report.clean
    assert (report.rows, report.blobs) == (3, 3)
    assert report.missing == []
    assert report.malformed == report.orphans == report.removed == []


async def test_missing_blob_is_reported(rig: StoreRig) -> None:
    appended = await _deliver(rig, 2)
    gone = appended[0].blob
    assert gone is not None
    rig.blobs.path_of(gone.blob_id).unlink()
    report = await store.check_store(rig.engine, rig.blobs)
    assert not report.clean
    assert report.missing == [(appended[0].row_id, gone.blob_id)]


async def test_malformed_blob_is_reported(rig: StoreRig) -> None:
    appended = await _deliver(rig, 2)
    bad = appended[1].blob
    assert bad is not None
    rig.blobs.path_of(bad.blob_id).write_bytes(b"not a blob header at all")
    report = await store.check_store(rig.engine, rig.blobs)
    assert not report.clean
    assert report.malformed == [bad.blob_id]


async def _orphan(rig: StoreRig, age_s: float) -> store.BlobId:
    # A well-formed blob no row names: what a crash between blob and row leaves.
    blob_id = (await store.write_blob(rig.blobs, None, _source(b"orphan"))).blob_id
    then = time.time() - age_s
    os.utime(rig.blobs.path_of(blob_id), (then, then))
    return blob_id


async def test_orphan_kept_within_grace_removed_after(rig: StoreRig) -> None:
    await _deliver(rig, 1)
    young = await _orphan(rig, 10)
    old = await _orphan(rig, 3600)
    report = await store.check_store(rig.engine, rig.blobs)
    assert sorted(report.orphans) == sorted([young, old])
    assert report.removed == []
    assert not report.clean
    report = await store.check_store(rig.engine, rig.blobs, fix=True, grace_s=600)
    assert report.removed == [old]
    assert report.kept_orphans == [young]
    assert not rig.blobs.path_of(old).exists()
    assert rig.blobs.path_of(young).exists()
    report = await store.check_store(rig.engine, rig.blobs, fix=True, grace_s=0)
    assert report.removed == [young]
    assert report.clean
    assert (await store.check_store(rig.engine, rig.blobs)).clean


async def test_a_malformed_blob_no_row_names_is_an_orphan(rig: StoreRig) -> None:
    await _deliver(rig, 1)
    blob_id = await _orphan(rig, age_s=7200)
    rig.blobs.path_of(blob_id).write_bytes(bytes(300))  # zeroed, as a crash may leave it
    os.utime(rig.blobs.path_of(blob_id), (time.time() - 7200,) * 2)
    report = await store.check_store(rig.engine, rig.blobs, fix=True)
    assert report.malformed == []
    assert report.orphans == report.removed == [blob_id]
    assert report.clean
