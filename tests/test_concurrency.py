"""The async boundary: run_blocking off the loop, or in place once block_in_place was
called (in a fresh interpreter here: the switch is for the life of a process)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from cryptmail.concurrency import run_blocking, run_calling_back, run_in_thread

_PROBE = """
import asyncio, threading
from cryptmail.concurrency import block_in_place, run_blocking, run_in_thread

async def main():
    main = threading.get_ident()
    before = await run_blocking(threading.get_ident) == main
    block_in_place()
    after = await run_blocking(threading.get_ident) == main
    waiting = await run_in_thread(threading.get_ident) == main
    print(before, after, waiting)

asyncio.run(main())
"""


async def test_run_blocking_runs_on_another_thread() -> None:
    assert await run_blocking(threading.get_ident) != threading.get_ident()
    assert await run_in_thread(threading.get_ident) != threading.get_ident()


def test_block_in_place_keeps_calls_on_the_loop_but_run_in_thread_still_leaves_it() -> None:
    found = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.split() == ["False", "True", "False"]


async def test_the_kdf_queue_is_bounded() -> None:
    """Beyond max_concurrent running and max_queued waiting, a derivation is refused at
    once (KdfBusy) instead of queueing behind a flood; a finished one frees its place."""
    import asyncio

    import pytest

    from cryptmail.concurrency import configure_kdf_pool, kdf_load, run_kdf
    from cryptmail.errors import KdfBusy

    release = threading.Event()
    configure_kdf_pool(1, max_queued=2)
    try:
        held = [asyncio.create_task(run_kdf(release.wait, 30)) for _ in range(3)]
        await asyncio.sleep(0)
        assert kdf_load() == 3
        with pytest.raises(KdfBusy):
            await run_kdf(release.wait, 30)
        release.set()
        assert await asyncio.gather(*held) == [True, True, True]
        assert kdf_load() == 0
        assert await run_kdf(lambda: 7) == 7
    finally:
        release.set()
        configure_kdf_pool(4)


async def test_calls_that_wait_on_the_loop_leave_the_default_pool_to_it() -> None:
    # SEARCH's evaluation runs in a thread and asks the loop for blob reads, which the loop
    # sends to the default pool. Six such evaluations once filled a six-thread default
    # pool and waited for reads that had no thread left: a deadlock.
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=2))

    def read() -> int:
        return threading.get_ident()

    def evaluate() -> int:
        future = asyncio.run_coroutine_threadsafe(run_blocking(read), loop)
        return future.result(timeout=20)  # raises TimeoutError on the deadlock

    done = await asyncio.wait_for(
        asyncio.gather(*(run_calling_back(evaluate) for _ in range(4))), timeout=30
    )
    assert len(done) == 4
