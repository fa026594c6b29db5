"""Ending helper tasks without losing the caller's cancellation, and finishing work a
stop must not cut short."""

from __future__ import annotations

import asyncio

import pytest

from cryptmail.tasks import cancel_and_wait, finish_then_cancel


async def test_cancel_and_wait_ends_the_tasks_and_drops_their_errors() -> None:
    async def fails() -> None:
        raise RuntimeError("a helper's failure nobody needs any more")

    sleeper = asyncio.create_task(asyncio.sleep(60))
    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(sleeper, None, failed)
    assert sleeper.cancelled() and failed.done()


async def test_a_cancellation_of_the_caller_while_it_waits_is_not_swallowed() -> None:
    """The old `cancel(); with suppress(CancelledError): await task` lost it: the
    caller (an IDLE session) carried on past its listener's stop."""
    started = asyncio.Event()

    async def stubborn() -> None:  # takes a while to end once cancelled
        try:
            await asyncio.sleep(60)
        finally:
            started.set()
            await asyncio.shield(asyncio.sleep(0.2))

    helper = asyncio.create_task(stubborn())
    await asyncio.sleep(0)

    async def caller() -> str:
        await cancel_and_wait(helper)
        return "carried on"

    outer = asyncio.create_task(caller())
    await started.wait()
    outer.cancel()  # the stop arrives while the caller waits for its helper
    with pytest.raises(asyncio.CancelledError):
        await outer
    await asyncio.wait({helper})


async def test_finish_then_cancel_runs_the_work_to_its_end_through_cancels() -> None:
    finished: list[str] = []

    async def update() -> str:
        await asyncio.sleep(0.1)
        finished.append("committed")
        return "done"

    task = asyncio.create_task(finish_then_cancel(update()))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    task.cancel()  # twice: still not cut short
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["committed"]
    assert await finish_then_cancel(update()) == "done"  # uncancelled: its result
