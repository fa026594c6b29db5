"""Ending what the database driver leaves running when a connection is broken off.

SQLAlchemy terminates a connection invalidated mid-query (a session cancelled by a
stop) with a graceful close under `asyncio.shield`; cancelled again meanwhile (a stop's
grace ran out), it force-closes the connection and leaves the graceful close running
on its own. With aiosqlite, that close then awaits the connection's thread, and, once
cancelled, awaits it again in a `finally`: the thread has ended, so it waits for ever.
`asyncio.run` cancels a leftover task once at exit and then waits for it: the process
hung there after its work was done. Only these tasks are ended here, so a task of ours
left pending still shows (a warning at exit, or a test's failure).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

log = logging.getLogger(__name__)

DRIVER_LEFTOVERS: Final = ("_terminate_graceful_close",)
"""Names of the coroutines of SQLAlchemy's own that a broken connection leaves behind."""
_ROUNDS: Final = 5
_ROUND_S: Final = 1.0


async def end_driver_leftovers() -> int:
    """Cancel the driver's leftover close tasks until they end, for at most about
    five seconds; return how many are still pending (logged as a warning)."""
    current = asyncio.current_task()
    leftovers = [
        task
        for task in asyncio.all_tasks()
        if task is not current and getattr(task.get_coro(), "__name__", "") in DRIVER_LEFTOVERS
    ]
    for _ in range(_ROUNDS):
        if not leftovers:
            return 0
        # One cancel can leave it waiting on a thread that has ended: cancel until done.
        for task in leftovers:
            task.cancel()
        _done, pending = await asyncio.wait(leftovers, timeout=_ROUND_S)
        leftovers = list(pending)
    if leftovers:
        log.warning("%d database connection closes did not end", len(leftovers))
    return len(leftovers)
