"""end_driver_leftovers: SQLAlchemy's close of a connection broken off twice mid-query
(on a real SQLite file through aiosqlite) is ended, and only it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from cryptmail.db import create_engine, end_driver_leftovers
from cryptmail.db._leftovers import DRIVER_LEFTOVERS

SLOW = (
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3000000) "
    "SELECT count(*) FROM r"
)


def _leftovers() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__name__", "") in DRIVER_LEFTOVERS
    ]


async def test_the_close_left_by_a_query_broken_off_twice_is_ended(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")

    async def session() -> None:
        async with engine.connect() as conn:
            await conn.execute(text(SLOW))

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
