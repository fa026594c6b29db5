"""The search thread's bridge to the session's loop: a search abandoned (its session
cancelled) ends the thread's wait on the loop at once, and every later call raises,
so no thread of the pool waits for ever on a loop that has stopped (the interpreter's
exit joins them: `serve` hung there after a SIGTERM mid-SEARCH)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cryptmail.concurrency import run_calling_back
from cryptmail.imap.server.commands._search import _Abandoned, _Bridge


async def test_a_call_answers_from_the_loop() -> None:
    bridge = _Bridge(asyncio.get_running_loop())

    async def answer() -> int:
        return 42

    assert await run_calling_back(bridge.call, answer()) == 42


async def test_abandoning_ends_the_wait_and_refuses_the_next_calls() -> None:
    bridge = _Bridge(asyncio.get_running_loop())
    started = asyncio.Event()  # set on the loop: the bridge runs the coroutine there
    never = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def search() -> list[str]:
        seen = []
        for _ in range(3):
            try:
                bridge.call(forever())
            except _Abandoned:
                seen.append("abandoned")
        return seen

    thread = asyncio.ensure_future(run_calling_back(search))
    await asyncio.wait_for(started.wait(), 30)
    assert not thread.done()
    bridge.abandon()
    # The thread's wait ends, the coroutine it waited on is cancelled on the loop, and
    # the two calls after it raise without scheduling anything (forever ran once).
    assert await asyncio.wait_for(thread, 30) == ["abandoned"] * 3
    await asyncio.wait_for(cancelled.wait(), 30)


async def test_a_cancelled_search_abandons_its_bridge() -> None:
    """find_messages abandons its bridge in a `finally`: cancelling the awaiting task
    (as a session's end does) ends the thread, which would otherwise wait on."""
    bridge = _Bridge(asyncio.get_running_loop())
    started, ended = asyncio.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    def search() -> None:
        try:
            bridge.call(forever())
        except _Abandoned:
            ended.set()

    async def awaiting() -> None:
        try:
            await run_calling_back(search)
        finally:
            bridge.abandon()

    task = asyncio.ensure_future(awaiting())
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(ended.wait, 30)
