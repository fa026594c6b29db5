"""Writes a session makes after it has answered, and owns until they have ended.

A first SORT or THREAD folds the keys it made (from delivery's sort entries, or the
slow way) into the mailbox's sort chunks, deleting the entries they replace
(`_sortkeys`). None of that changes the answer, so the command queues the write here
and the session starts it once the answer is sent (at 10,000 messages the write was a
third of that first SORT's time). The session keeps each write it started: LOGOUT
answers OK only once they have ended, and a closing connection, and so the listener's
stop, waits for them (the engine is disposed after the stop). A write that fails is
logged and loses nothing: its keys are in memory, the entries stay until a chunk
holding their keys is written, and whoever sorts next in a new process folds them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from cryptmail.tasks import finish_then_cancel

log = logging.getLogger(__name__)

Write = Callable[[], Coroutine[Any, Any, None]]
"""Makes the coroutine of one write (made only when the write starts)."""


class SessionWrites:
    """The writes one session deferred past its answers."""

    __slots__ = ("_queued", "_running")

    def __init__(self) -> None:
        self._queued: list[tuple[Write, str]] = []
        self._running: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"SessionWrites(queued={len(self._queued)}, running={len(self._running)})"

    def __len__(self) -> int:
        """Writes queued or running."""
        return len(self._queued) + len(self._running)

    def defer(self, write: Write, what: str) -> None:
        """Run ``write`` once the answer of the command in progress is sent; ``what``
        names it in the log (ids only)."""
        self._queued.append((write, what))

    def start(self) -> None:
        """Start every write deferred so far (the session calls it after each answer)."""
        queued, self._queued = self._queued, []
        for write, what in queued:
            task = asyncio.create_task(self._run(write, what))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def finish(self) -> None:
        """Start what is still deferred and wait until every write has ended. A
        cancellation of the caller meanwhile (a listener's stop) is raised once they
        have: a write is a short transaction, and must not outlive the engine."""
        self.start()
        while self._running:
            await finish_then_cancel(asyncio.wait(set(self._running)))

    @staticmethod
    async def _run(write: Write, what: str) -> None:
        try:
            await write()
        except Exception:  # the answer is sent: only the log can tell
            log.exception("deferred write (%s) failed; left for next time", what)
