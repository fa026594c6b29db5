"""run_transaction on a SQLite file: whole transactions, writers queued, reads included."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from cryptmail.db import create_engine, run_transaction
from cryptmail.db._engine import _sqlite_pragmas, _sqlite_pragmas_synced_after, _sync_wal

from .conftest import Db, hold_turn


def _locked_for_others(path: Path) -> bool:
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return True
    other.execute("ROLLBACK")
    return False


async def test_a_write_transaction_holds_the_write_lock_before_its_first_read(db: Db) -> None:
    engine, path = db
    seen: list[bool] = []

    def work(conn: Connection) -> int:
        value = int(conn.execute(text("SELECT value FROM counter")).scalar_one())
        # The read above is inside the transaction, under the write lock: no other
        # writer can change the value between it and the update below.
        seen.append(_locked_for_others(path))
        conn.execute(text("UPDATE counter SET value = :v"), {"v": value + 1})
        return value

    assert await run_transaction(engine, work) == 0
    assert seen == [True]
    assert not _locked_for_others(path)


async def test_a_read_transaction_takes_no_write_lock(db: Db) -> None:
    engine, path = db
    seen: list[bool] = []

    def work(conn: Connection) -> int:
        seen.append(_locked_for_others(path))
        return int(conn.execute(text("SELECT value FROM counter")).scalar_one())

    assert await run_transaction(engine, work, writes=False) == 0
    assert seen == [False]


async def test_concurrent_read_modify_writes_lose_no_update(db: Db) -> None:
    engine, _path = db
    barrier = threading.Barrier(4, timeout=5)

    def bump(conn: Connection) -> None:
        value = int(conn.execute(text("SELECT value FROM counter")).scalar_one())
        try:
            barrier.wait(timeout=0.2)  # writers queue, so only one is here at a time
        except threading.BrokenBarrierError:
            pass
        conn.execute(text("UPDATE counter SET value = :v"), {"v": value + 1})

    await asyncio.gather(*(run_transaction(engine, bump) for _ in range(4)))

    def read(conn: Connection) -> int:
        return int(conn.execute(text("SELECT value FROM counter")).scalar_one())

    assert await run_transaction(engine, read, writes=False) == 4


async def test_a_failing_write_transaction_rolls_back_and_frees_the_lock(db: Db) -> None:
    engine, path = db

    def fail(conn: Connection) -> None:
        conn.execute(text("UPDATE counter SET value = 99"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await run_transaction(engine, fail)
    assert not _locked_for_others(path)

    def read(conn: Connection) -> int:
        return int(conn.execute(text("SELECT value FROM counter")).scalar_one())

    assert await run_transaction(engine, read, writes=False) == 0


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_writers_of_other_processes_queue_on_the_writers_file(db: Db) -> None:
    engine, path = db
    writers = Path(f"{path}-writers")

    def bump(conn: Connection) -> None:
        conn.execute(text("UPDATE counter SET value = value + 1"))

    await run_transaction(engine, bump)
    assert _mode(writers) == 0o600  # made by the first write; it holds nothing anyway
    holder = hold_turn(writers)
    try:
        waiting = asyncio.ensure_future(run_transaction(engine, bump))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # queued behind the other process, not in SQLite
        assert holder.stdin is not None
        holder.stdin.write(b"\n")
        holder.stdin.flush()
        await asyncio.wait_for(waiting, 10)
    finally:
        with holder:  # waits, and closes its pipes
            holder.kill()


def _open_in(directory: Path) -> list[str]:
    """The paths under `directory` this process holds a descriptor of."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:  # closed while listed (the listing's own descriptor)
            continue
        if target.is_relative_to(directory):
            held.append(str(target))
    return held


async def test_disposing_the_engine_closes_every_file_of_the_database(tmp_path: Path) -> None:
    """The plain-sqlite3 engine behind run_transaction and the writer queue's flock go
    with the async engine's dispose, not only when (if ever) it is collected: a test
    suite or a CLI that makes engine after engine would otherwise run out of fds."""
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    insert = text("INSERT INTO t DEFAULT VALUES")
    await asyncio.gather(*(run_transaction(engine, lambda c: c.execute(insert)) for _ in range(4)))
    # The work reads its answer inside the transaction, as run_transaction asks: a
    # CursorResult handed out unread keeps its statement, and SQLite then closes the
    # connection only when the last reference goes (sqlite3_close_v2). The executor's
    # thread held one a moment after the await returned: under load the dispose came
    # first and the files were still open (the flake).
    one = await run_transaction(
        engine, lambda c: c.execute(text("SELECT 1")).scalar_one(), writes=False
    )
    assert one == 1
    assert any(p.endswith("db.sqlite-writers") for p in _open_in(tmp_path))
    await engine.dispose()
    assert _open_in(tmp_path) == []
    # Still usable after a dispose, as SQLAlchemy's engines are: it opens them again.
    count = await run_transaction(
        engine, lambda c: c.execute(text("SELECT count(*) FROM t")).scalar_one()
    )
    assert count == 4
    await run_transaction(engine, lambda c: c.execute(text("DELETE FROM t")))
    await engine.dispose()
    assert _open_in(tmp_path) == []


def _fsyncs_of_the_wal(monkeypatch: pytest.MonkeyPatch, path: Path) -> list[bool]:
    """Record each fsync of ``path``'s WAL: whether the writer turn was free then (another
    descriptor of the writers file takes its flock at once). Other fsyncs pass."""
    real = os.fsync
    seen: list[bool] = []

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}") == f"{path}-wal":
            probe = os.open(f"{path}-writers", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(probe, fcntl.LOCK_UN)
                seen.append(True)
            except BlockingIOError:
                seen.append(False)
            finally:
                os.close(probe)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


async def test_a_write_is_synced_to_disk_after_the_writer_turn(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_transaction's connections commit with synchronous=NORMAL and the WAL is then
    fsynced once the turn is given back (FULL's durability, the fsync out of the turn);
    the async engine's connections keep FULL."""
    engine, path = db
    seen = _fsyncs_of_the_wal(monkeypatch, path)
    bump = text("UPDATE counter SET value = value + 1")
    await run_transaction(engine, lambda c: c.execute(bump))
    assert seen == [True]
    # Writers in parallel: each commit is synced (another writer may hold the turn by
    # then: that is the point).
    await asyncio.gather(*(run_transaction(engine, lambda c: c.execute(bump)) for _ in range(3)))
    assert len(seen) == 4
    mode = text("PRAGMA synchronous")
    assert await run_transaction(engine, lambda c: c.execute(mode).scalar_one()) == 1
    async with engine.connect() as conn:
        assert (await conn.execute(mode)).scalar_one() == 2  # FULL


async def test_a_read_transaction_is_synced_only_if_it_wrote(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, path = db
    seen = _fsyncs_of_the_wal(monkeypatch, path)
    select_value = text("SELECT value FROM counter")
    assert (
        await run_transaction(engine, lambda c: c.execute(select_value).scalar_one(), writes=False)
        == 0
    )
    assert seen == []
    await run_transaction(
        engine, lambda c: c.execute(text("UPDATE counter SET value = 7")), writes=False
    )
    assert seen == [True]


async def test_no_wal_file_means_nothing_to_sync(tmp_path: Path) -> None:
    """The last connection's close checkpoints the WAL into the database file (synced)
    and deletes it: the sync then has nothing to do and does not fail."""
    _sync_wal(str(tmp_path / "absent.sqlite"))


class _Cursor:
    def __init__(self, mode: str, run: list[str]) -> None:
        self._mode, self._run = mode, run

    def execute(self, sql: str) -> None:
        self._run.append(sql)

    def fetchone(self) -> tuple[str]:
        return (self._mode,)

    def close(self) -> None:
        pass


class _Connection:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.run: list[str] = []

    def cursor(self) -> _Cursor:
        return _Cursor(self.mode, self.run)


@pytest.mark.parametrize(("mode", "expected"), [("wal", "NORMAL"), ("delete", "FULL")])
def test_normal_only_where_the_wal_is_what_gets_synced(mode: str, expected: str) -> None:
    """A file system without shared memory keeps the rollback journal: no WAL to sync
    after the commit, so that connection commits with FULL."""
    conn = _Connection(mode)
    _sqlite_pragmas_synced_after(conn, None)
    assert f"PRAGMA synchronous={expected}" in conn.run
    full = _Connection("wal")
    _sqlite_pragmas(full, None)
    assert "PRAGMA synchronous=FULL" in full.run
