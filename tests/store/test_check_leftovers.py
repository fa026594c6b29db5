"""store check on what a crash leaves: young orphans kept without calling the store
unclean, and the temp files in `blobs/tmp` counted (and, with fix, the dead writers'
removed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest

from cryptmail import store
from cryptmail.store.blobs import TempFiles

from .conftest import StoreRig


async def _source(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _orphan(rig: StoreRig, age_s: float) -> tuple[store.BlobId, float]:
    blob_id = (await store.write_blob(rig.blobs, None, _source(b"orphan"))).blob_id
    then = time.time() - age_s
    os.utime(rig.blobs.path_of(blob_id), (then, then))
    return blob_id, then


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return int(child.stdout)


async def test_orphans_within_the_grace_period_leave_the_store_clean(rig: StoreRig) -> None:
    young, _ = await _orphan(rig, 100)
    younger, then = await _orphan(rig, 10)
    report = await store.check_store(rig.engine, rig.blobs, grace_s=600)
    assert sorted(report.orphans) == sorted([young, younger])
    assert sorted(report.young_orphans) == sorted([young, younger])
    assert report.clean
    assert report.orphans_go_after == pytest.approx(then + 600, abs=1)
    fixed = await store.check_store(rig.engine, rig.blobs, fix=True, grace_s=600)
    assert fixed.removed == [] and fixed.clean
    assert rig.blobs.path_of(young).exists()


async def test_an_orphan_past_the_grace_period_is_a_problem_until_removed(
    rig: StoreRig,
) -> None:
    young, _ = await _orphan(rig, 10)
    old, _ = await _orphan(rig, 3600)
    report = await store.check_store(rig.engine, rig.blobs, grace_s=600)
    assert report.young_orphans == [young]
    assert not report.clean
    fixed = await store.check_store(rig.engine, rig.blobs, fix=True, grace_s=600)
    assert fixed.removed == [old]
    assert fixed.clean


async def test_no_orphans_no_deadline(rig: StoreRig) -> None:
    report = await store.check_store(rig.engine, rig.blobs)
    assert report.young_orphans == [] and report.orphans_go_after is None


async def test_temp_leftovers_are_counted_and_fix_removes_the_dead_writers(
    rig: StoreRig,
) -> None:
    tmp = rig.blobs.root / "tmp"
    dead = _dead_pid()
    (tmp / f"{store.new_blob_id().hex()}.{dead}").write_bytes(b"a" * 1000)
    (tmp / f"{store.new_blob_id().hex()}.deleted.{dead}").write_bytes(b"b" * 234)
    live = tmp / f"{store.new_blob_id().hex()}.{os.getpid()}"  # this test: a writer alive
    live.write_bytes(b"c" * 10)
    report = await store.check_store(rig.engine, rig.blobs)
    assert report.temp == TempFiles(3, 1244)
    assert report.temp_removed == TempFiles(0, 0)
    assert report.clean  # the next start or sweep removes them; nothing is lost or wrong
    fixed = await store.check_store(rig.engine, rig.blobs, fix=True)
    assert fixed.temp == TempFiles(3, 1244)
    assert fixed.temp_removed == TempFiles(2, 1234)
    assert list(tmp.iterdir()) == [live]
