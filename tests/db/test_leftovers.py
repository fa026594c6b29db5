"""end_driver_leftovers: SQLAlchemy's close of a connection broken off twice mid-query
(on a real SQLite file through aiosqlite) is ended, and only it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from sqlalchemy import text

from cryptmail.db import create_engine, end_driver_leftovers
from cryptmail.db._leftovers import DRIVER_LEFTOVERS


def hold_writes(path: Path) -> sqlite3.Connection:
    """Another connection holding the write lock: a write of the engine waits in
    SQLite's busy handler, in aiosqlite's thread, until it is closed."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    return holder


def _leftovers() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__name__", "") in DRIVER_LEFTOVERS
    ]


async def test_the_close_left_by_a_query_broken_off_twice_is_ended(tmp_path: Path) -> None:
    holder = hold_writes(tmp_path / "x.db")
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")

    async def session() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))  # waits for the holder

    ours = asyncio.create_task(asyncio.sleep(3600))
    task = asyncio.create_task(session())
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.wait([task])
    await engine.dispose()
    assert _leftovers()  # what asyncio.run would then wait on for ever
    assert await end_driver_leftovers() == 0
    assert _leftovers() == []
    assert not ours.done()  # a task of ours is not the driver's to end
    ours.cancel()
    holder.close()  # aiosqlite's thread then ends: waited for while this loop runs
    for thread in threading.enumerate():
        if "_connection_worker_thread" in thread.name:
            await asyncio.to_thread(thread.join, 10)
