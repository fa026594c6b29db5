"""What a killed writer leaves in `blobs/tmp`: zeroed before it is unlinked, removed at
start-up when its writer is gone, and counted for `store check`.

Each file is hard-linked outside tmp/ before the cleanup: the link keeps the inode, so
reading it afterwards shows what the cleanup left on the disk blocks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.store import new_blob_id
from cryptmail.store.blobs import LocalBlobStore, TempFiles

MARKER = b"PLAINTEXT-MARKER " * 1000


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return int(child.stdout)


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of another process that runs for the test's length."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def _leftover(blobs: LocalBlobStore, name: str, peeks: Path) -> Path:
    """A file in tmp/ holding MARKER, and a hard link to it under `peeks`."""
    path = blobs.root / "tmp" / name
    path.write_bytes(MARKER)
    peeks.mkdir(exist_ok=True)
    os.link(path, peeks / name)
    return path


def _zeroed(peek: Path) -> bool:
    return peek.read_bytes() == bytes(len(MARKER))


async def test_start_up_cleanup_zeroes_and_removes_what_dead_writers_left(
    tmp_path: Path,
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    peeks = tmp_path / "peeks"
    dead = _dead_pid()
    names = [
        f"{new_blob_id().hex()}.{dead}",  # an APPEND killed while writing
        f"{new_blob_id().hex()}.deleted.{dead}",  # a blob killed while being deleted
        f"{new_blob_id().hex()}.{os.getpid()}",  # this process's pid, from a past life
    ]
    for name in names:
        _leftover(blobs, name, peeks)
    # Outside start-up this process may be writing: its own files are spared then.
    assert await blobs.sweep_dead_writers() == TempFiles(2, 2 * len(MARKER))
    assert [p.name for p in (blobs.root / "tmp").iterdir()] == [names[2]]

    removed = await blobs.sweep_dead_writers(spare_own=False)

    assert removed == TempFiles(1, len(MARKER))
    assert list((blobs.root / "tmp").iterdir()) == []
    for name in names:
        assert _zeroed(peeks / name), name


async def test_start_up_cleanup_spares_another_running_writer(
    tmp_path: Path, live_pid: int
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    writing = _leftover(blobs, f"{new_blob_id().hex()}.{live_pid}", tmp_path / "peeks")
    deleting = _leftover(blobs, f"{new_blob_id().hex()}.deleted.{live_pid}", tmp_path / "peeks")
    strange = _leftover(blobs, "not-a-writers-name", tmp_path / "peeks")

    assert await blobs.sweep_dead_writers() == TempFiles(0, 0)
    assert writing.read_bytes() == deleting.read_bytes() == strange.read_bytes() == MARKER


async def test_the_hourly_sweep_zeroes_before_unlinking(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    old = _leftover(blobs, f"{new_blob_id().hex()}.deleted.1", tmp_path / "peeks")
    then = time.time() - 7200
    os.utime(old, (then, then))
    assert await blobs.sweep_temp(3600) == 1
    assert not old.exists()
    assert _zeroed(tmp_path / "peeks" / old.name)


async def test_an_aborted_write_is_zeroed_before_unlinking(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    writer = await blobs.create(new_blob_id())
    for _ in range(40):  # past the writer's buffer, so the temp file exists
        await writer.write(MARKER)
    temps = list((blobs.root / "tmp").iterdir())
    assert len(temps) == 1
    size = temps[0].stat().st_size
    assert size > 0
    peek = tmp_path / "peek"
    os.link(temps[0], peek)
    await writer.abort()
    assert list((blobs.root / "tmp").iterdir()) == []
    assert peek.read_bytes() == bytes(size)


async def test_temp_usage_counts_files_and_bytes(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    assert await blobs.temp_usage() == TempFiles(0, 0)
    (blobs.root / "tmp" / "a.1").write_bytes(b"x" * 10)
    (blobs.root / "tmp" / "b.deleted.1").write_bytes(b"y" * 5)
    assert await blobs.temp_usage() == TempFiles(2, 15)
