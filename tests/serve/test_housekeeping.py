"""The periodic sweep of `cryptmail serve`: crash leftovers go, anything in use stays."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cryptmail import store
from cryptmail.config import load_config
from cryptmail.db import create_engine, upgrade
from cryptmail.keys import create_user
from cryptmail.secret import Password
from cryptmail.serve import _housekeeping
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import add_domain, get_user

from .conftest import CRYPTO

DAY = 86400.0


async def _source(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _blob(blobs: LocalBlobStore, age_s: float) -> store.BlobId:
    stored = await store.write_blob(blobs, None, _source(b"orphan"))
    then = time.time() - age_s
    os.utime(blobs.path_of(stored.blob_id), (then, then))
    return stored.blob_id


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return int(child.stdout)


async def test_sweep_removes_old_orphans_temps_and_dead_spools(tmp_path: Path) -> None:
    config = load_config(None, data_dir=str(tmp_path / "data"))
    engine = create_engine(config.database_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await add_domain(conn, "example.org")
        await create_user(engine, "a@example.org", Password.from_str("pw 1"), CRYPTO, crypt=0)
        async with engine.begin() as conn:
            user = await get_user(conn, "a@example.org")
            await store.ensure_default_mailboxes(conn, user.id)
        blobs = LocalBlobStore(config.blob_path)
        kept = await store.deliver_message(engine, blobs, user, _source(b"Subject: x\r\n\r\nx"))
        assert kept.blob is not None
        then = time.time() - 2 * DAY
        os.utime(blobs.path_of(kept.blob.blob_id), (then, then))
        old_orphan = await _blob(blobs, 2 * DAY)
        young_orphan = await _blob(blobs, 60)
        old_temp = blobs.root / "tmp" / "ab.1"
        old_temp.write_bytes(b"half")
        os.utime(old_temp, (then, then))
        spool_dir = config.data_path / "spool"
        spool_dir.mkdir()
        dead = spool_dir / f"spool-{_dead_pid()}-00"
        live = spool_dir / f"spool-{os.getpid()}-00"
        dead.write_bytes(b"x")
        live.write_bytes(b"x")

        await _housekeeping.sweep_once(engine, blobs, spool_dir)

        left = {b async for b in blobs.list_ids()}
        assert left == {kept.blob.blob_id, young_orphan}
        assert old_orphan not in left
        assert not old_temp.exists()
        assert not dead.exists() and live.exists()
    finally:
        await engine.dispose()


async def test_sweep_runs_at_start_survives_a_failed_pass_and_stops_on_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutdown = asyncio.Event()
    calls: list[int] = []

    async def fake_sweep(*_args: object) -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise OSError("disk hiccup")
        shutdown.set()

    monkeypatch.setattr(_housekeeping, "sweep_once", fake_sweep)
    monkeypatch.setattr(_housekeeping, "SWEEP_EVERY_S", 0.0)
    blobs = LocalBlobStore(tmp_path / "blobs")
    await _housekeeping.sweep_forever(None, blobs, tmp_path / "spool", shutdown)  # type: ignore[arg-type]  # the fake needs no engine
    assert calls == [0, 1]


async def test_tag_expiry_runs_at_start_survives_a_failure_and_stops_on_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shutdown = asyncio.Event()
    calls: list[int] = []

    async def fake_expire(_engine: object) -> int:
        calls.append(len(calls))
        if len(calls) == 1:
            raise OSError("database hiccup")
        shutdown.set()
        return 3

    monkeypatch.setattr(_housekeeping, "expire_delivery_tags", fake_expire)
    monkeypatch.setattr(_housekeeping, "TAG_EXPIRY_EVERY_S", 0.0)
    await _housekeeping.expire_tags_forever(None, shutdown)  # type: ignore[arg-type]  # the fake needs no engine
    assert calls == [0, 1]


async def test_deleted_blobs_are_zeroed_once_their_grace_is_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    blob_id = store.new_blob_id()
    writer = await blobs.create(blob_id)
    await writer.write(b"plain words " * 100)
    await writer.commit()
    await blobs.delete(blob_id)
    [doomed] = list((blobs.root / "tmp").iterdir())
    os.link(doomed, tmp_path / "peek")
    monkeypatch.setattr(_housekeeping, "DELETE_GRACE_S", 0.05)
    shutdown = asyncio.Event()
    task = asyncio.create_task(_housekeeping.zero_deleted_forever(blobs, shutdown))
    for _ in range(200):
        if not doomed.exists():
            break
        await asyncio.sleep(0.05)
    shutdown.set()
    await task
    assert not doomed.exists()
    assert (tmp_path / "peek").read_bytes() == bytes(1200)
