"""LocalBlobStore: crash-safe writes (small ones under their id, large ones through
tmp/), the temp sweep, overwrite after delete, listing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cryptmail.errors import BlobMissing, StoreUnavailable
from cryptmail.store import BlobId, new_blob_id
from cryptmail.store.blobs import LocalBlobStore, TempFiles

from .blob_contract import (
    committed_blobs,
    missing_blob_raises_blob_missing,
    read_heads_gives_prefixes_and_leaves_out_missing_blobs,
    small_blob_commits_and_abort_leaves_nothing,
)


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def _temp_files(blobs: LocalBlobStore) -> list[Path]:
    return list((blobs.root / "tmp").iterdir())


async def test_write_goes_to_temp_then_renames(blobs: LocalBlobStore) -> None:
    blob_id = new_blob_id()
    writer = await blobs.create(blob_id)
    await writer.write(b"hello ")
    # A small blob stays in memory until commit: no file at all yet.
    assert _temp_files(blobs) == []
    big = b"w" * 300_000
    await writer.write(big)
    # Nothing under the id before commit; the bytes sit in a temp file.
    assert not blobs.path_of(blob_id).exists()
    assert len(_temp_files(blobs)) == 1
    with pytest.raises(BlobMissing):
        await blobs.read(blob_id)
    assert await writer.commit() == 6 + len(big)
    assert _temp_files(blobs) == []
    assert await blobs.read(blob_id) == b"hello " + big
    assert await blobs.read(blob_id, 6, 3) == b"www"
    assert await blobs.size(blob_id) == 6 + len(big)


async def test_a_small_blob_is_written_at_commit_and_an_abort_leaves_nothing(
    blobs: LocalBlobStore,
) -> None:
    await small_blob_commits_and_abort_leaves_nothing(blobs)
    assert _temp_files(blobs) == []


async def test_a_small_blob_is_written_under_its_id_with_one_sync_of_each(
    blobs: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Created under its id, so its name goes to disk with its inode: no temp file, no
    rename, the file synced before its directory."""

    blob_id = new_blob_id()
    final = blobs.path_of(blob_id)
    synced: list[str] = []  # what each fsync was of, files and directories alike
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr("cryptmail.store.blobs._local.os.fsync", record)
    renames: list[object] = []
    monkeypatch.setattr("cryptmail.store.blobs._local.os.rename", lambda *a: renames.append(a))
    writer = await blobs.create(blob_id)
    await writer.write(b"small ")
    await writer.write(b"message")
    assert not final.exists()  # nothing on disk before commit
    assert await writer.commit() == 13
    assert synced == [str(final), str(final.parent)]
    assert renames == []
    assert _temp_files(blobs) == []
    assert await blobs.read(blob_id) == b"small message"


async def test_a_failed_write_under_the_id_leaves_nothing_there(
    blobs: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that refuses the fsync: the caller gets StoreUnavailable (it commits no
    row) and the half-made file is zeroed and gone, not left to the orphan sweep."""
    from cryptmail.store.blobs import _local

    blob_id = new_blob_id()
    zeroed: list[Path] = []
    real_zero = _local._zero_and_unlink

    def refuse(fd: int) -> None:
        raise OSError(5, "Input/output error")

    def zero(path: Path) -> int:
        zeroed.append(path)
        return real_zero(path)

    monkeypatch.setattr("cryptmail.store.blobs._local.os.fsync", refuse)
    monkeypatch.setattr(_local, "_zero_and_unlink", zero)
    writer = await blobs.create(blob_id)
    await writer.write(b"plaintext of a crypt 0 user")
    with pytest.raises(StoreUnavailable, match="Input/output error"):
        await writer.commit()
    assert zeroed == [blobs.path_of(blob_id)]
    assert not blobs.path_of(blob_id).exists()
    assert [b async for b in blobs.list_ids()] == []
    assert _temp_files(blobs) == []


async def test_large_write_streams_back(blobs: LocalBlobStore) -> None:
    blob_id = new_blob_id()
    data = os.urandom(700_000)
    writer = await blobs.create(blob_id)
    for start in range(0, len(data), 100_000):
        await writer.write(data[start : start + 100_000])
    await writer.commit()
    pieces = [piece async for piece in blobs.stream(blob_id, 10, 65536)]
    assert all(len(p) <= 65536 for p in pieces)
    assert b"".join(pieces) == data[10:]


async def test_abort_leaves_nothing(blobs: LocalBlobStore) -> None:
    blob_id = new_blob_id()
    writer = await blobs.create(blob_id)
    await writer.write(os.urandom(300_000))
    await writer.abort()
    assert _temp_files(blobs) == []
    assert not blobs.path_of(blob_id).exists()
    assert [b async for b in blobs.list_ids()] == []


async def test_sweep_temp_removes_only_old_temp_files(blobs: LocalBlobStore) -> None:
    old = blobs.root / "tmp" / "old.1"
    young = blobs.root / "tmp" / "young.1"
    old.write_bytes(b"x")
    young.write_bytes(b"y")
    an_hour_ago = time.time() - 3700
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert await blobs.sweep_temp() == 1
    assert not old.exists()
    assert young.exists()
    assert await blobs.sweep_temp(min_age_s=0) == 1
    assert _temp_files(blobs) == []


async def _secret_blob(blobs: LocalBlobStore) -> BlobId:
    blob_id = new_blob_id()
    writer = await blobs.create(blob_id)
    await writer.write(b"secret bytes" * 1000)
    await writer.commit()
    return blob_id


async def test_delete_moves_the_blob_out_of_its_name_and_zeroes_it_after_the_grace(
    blobs: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob_id = await _secret_blob(blobs)
    path = blobs.path_of(blob_id)
    await blobs.delete(blob_id)
    assert not path.exists()
    with pytest.raises(BlobMissing):
        await blobs.read(blob_id)
    # Within the grace the bytes are left alone: a read may still be on them.
    assert await blobs.sweep_deleted() == TempFiles(0, 0)
    [doomed] = _temp_files(blobs)
    assert doomed.read_bytes() == b"secret bytes" * 1000

    seen: list[tuple[str, bytes]] = []
    real_unlink = Path.unlink

    def spy(self: Path, missing_ok: bool = False) -> None:
        seen.append((self.parent.name, self.read_bytes()))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", spy)
    assert await blobs.sweep_deleted(0) == TempFiles(1, 12_000)
    # Zeroed, then unlinked.
    assert seen == [("tmp", bytes(12_000))]
    assert _temp_files(blobs) == []
    await blobs.delete(blob_id)  # absent: no error


async def test_a_read_that_opened_the_blob_before_its_delete_gets_the_real_bytes(
    blobs: LocalBlobStore,
) -> None:
    """The multi-session test once saw a FETCH answer a message with wrong bytes while
    another session expunged it: the delete zeroed the inode the FETCH had open."""
    blob_id = await _secret_blob(blobs)
    with open(blobs.path_of(blob_id), "rb") as reader:  # noqa: ASYNC230 - the point
        await blobs.delete(blob_id)
        await blobs.sweep_deleted()
        assert reader.read() == b"secret bytes" * 1000


async def test_a_sweep_killed_while_overwriting_leaves_no_half_zeroed_blob(
    blobs: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob_id = await _secret_blob(blobs)
    await blobs.delete(blob_id)
    real_fsync = os.fsync

    def crash(fd: int) -> None:
        raise OSError("killed while overwriting")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="killed"):
        await blobs.sweep_deleted(0)
    monkeypatch.setattr(os, "fsync", real_fsync)
    # The blob's name is gone; what is left is a temp file the sweeps remove.
    assert [b async for b in blobs.list_ids()] == []
    assert len(_temp_files(blobs)) == 1
    assert await blobs.sweep_temp(0) == 1


async def test_list_ids_skips_temp_and_foreign_names(blobs: LocalBlobStore) -> None:
    ids = await committed_blobs(blobs, 5)
    pending = await blobs.create(new_blob_id())
    await pending.write(b"in flight")
    (blobs.path_of(ids[0]).parent / "not-hex").write_bytes(b"")
    assert sorted([b async for b in blobs.list_ids()]) == sorted(ids)
    await pending.abort()


async def test_missing_blob_raises_blob_missing(blobs: LocalBlobStore) -> None:
    await missing_blob_raises_blob_missing(blobs)


async def test_read_heads_gives_prefixes_and_leaves_out_missing_blobs(
    blobs: LocalBlobStore,
) -> None:
    await read_heads_gives_prefixes_and_leaves_out_missing_blobs(blobs)


def test_a_new_store_makes_every_fan_out_directory_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptmail.store.blobs import _local

    synced: list[Path] = []
    monkeypatch.setattr(_local, "_fsync_dir", lambda path: synced.append(Path(path)))
    store = LocalBlobStore(tmp_path / "blobs")
    assert sorted(p.name for p in store.root.iterdir() if p.name != "tmp") == [
        f"{n:02x}" for n in range(256)
    ]
    assert all((store.root / f"{n:02x}").stat().st_mode & 0o777 == 0o700 for n in range(256))
    assert synced == [store.root]
    synced.clear()
    LocalBlobStore(tmp_path / "blobs")  # a second start has nothing to make
    assert synced == []


async def test_a_new_fan_out_directory_is_synced_in_its_parent(
    blobs: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptmail.store.blobs import _local

    synced: list[Path] = []
    real = _local._fsync_dir

    def record(path: Path) -> None:
        synced.append(Path(path))
        real(path)

    monkeypatch.setattr(_local, "_fsync_dir", record)
    first = new_blob_id()
    blobs.path_of(first).parent.rmdir()  # as if lost, or from before they were made up front
    writer = await blobs.create(first)
    await writer.write(b"one")
    await writer.commit()
    fan_out = blobs.path_of(first).parent
    assert synced == [blobs.root, fan_out]
    # A second blob in the same directory syncs only that directory.
    second = BlobId(first[:1] + os.urandom(15))
    synced.clear()
    writer = await blobs.create(second)
    await writer.write(b"two")
    await writer.commit()
    assert synced == [fan_out]


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in root.rglob("*")}


async def test_blobs_and_spools_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    from cryptmail.store import Spool

    previous = os.umask(0o022)
    try:
        blobs = LocalBlobStore(tmp_path / "data" / "blobs")
        writer = await blobs.create(new_blob_id())
        await writer.write(b"body" * 100_000)  # the temp file, before commit
        temp_modes = _modes(blobs.root / "tmp")
        await writer.commit()
        spool = Spool(tmp_path / "data" / "spool", memory_limit=0)
        await spool.write(b"in transit")
        await spool.close()
    finally:
        os.umask(previous)
    assert set(temp_modes.values()) == {0o600}
    modes = _modes(tmp_path / "data")
    dirs = {name for name in modes if (tmp_path / "data" / name).is_dir()}
    assert dirs and all(modes[name] == 0o700 for name in dirs), modes
    assert all(mode == 0o600 for name, mode in modes.items() if name not in dirs), modes
    spool.discard()


async def test_a_written_buffer_reused_by_its_owner_is_stored_as_it_was(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    blob_id = new_blob_id()
    writer = await store.create(blob_id)
    buffer = bytearray(b"first")
    await writer.write(buffer)  # type: ignore[arg-type]  # -- a caller's reused buffer
    buffer[:] = b"other"
    await writer.write(b" second")
    await writer.commit()
    assert await store.read(blob_id, 0, 100) == b"first second"
