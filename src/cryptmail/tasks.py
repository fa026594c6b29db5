"""Ending a helper task, and finishing work a stop must not cut short, without losing
the caller's own cancellation.

The usual `task.cancel(); with suppress(CancelledError): await task` swallows a
cancellation of the *caller* that arrives while it waits (a listener's stop): the
caller then carries on as if nothing had been asked. An IDLE session did exactly that
and outlived its listener's stop, holding the database past the engine's dispose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


def _retrieve(task: asyncio.Future[Any]) -> None:
    # Read, so that asyncio does not log "exception was never retrieved" for a helper
    # whose failure no longer matters to anyone.
    if not task.cancelled():
        task.exception()


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel `tasks` (None and finished ones are skipped) and wait until each has
    ended; their results and errors are dropped. A cancellation of the caller while it
    waits propagates; the tasks then end on their own."""
    pending = [task for task in tasks if task is not None]
    for task in pending:
        task.cancel()
    try:
        if pending:
            # asyncio.wait raises only for the caller's own cancellation, never the tasks'.
            await asyncio.wait(pending)
    finally:
        for task in pending:
            if task.done():
                _retrieve(task)
            else:
                task.add_done_callback(_retrieve)


async def finish_then_cancel(work: Awaitable[T]) -> T:
    """Await `work` to its end even if the caller is cancelled meanwhile (once or many
    times), then raise that cancellation: for a short write that must not be left to
    run on its own after its session ended (the stop waits for the session, and the
    engine is disposed after the stop)."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})  # unlike `await task`, leaves the work running
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        _retrieve(task)
        raise asyncio.CancelledError
    return task.result()
