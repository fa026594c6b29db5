"""An asyncio loop run in a thread of its own, for test servers that sync clients
(imaplib, poplib, sievelib) talk to."""

from __future__ import annotations

import asyncio
import threading


def start_loop_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return loop, thread


# SQLAlchemy's terminate() of a connection invalidated mid-query (a session cancelled by
# a stop) shields a graceful close and, cancelled again, falls back to a forced one: the
# shielded close is left waiting on aiosqlite's stopped thread. asyncio.run, which serve
# uses, cancels it at exit; a loop closed by hand would log it as destroyed. Only these
# are drained here, so a task of ours left pending still shows in a test.
_THIRD_PARTY_LEFTOVERS = ("_terminate_graceful_close",)


async def _drain_third_party_leftovers() -> None:
    leftovers = [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and getattr(task.get_coro(), "__name__", "") in _THIRD_PARTY_LEFTOVERS
    ]
    # aiosqlite's close awaits its thread again in a `finally`, so one cancel can leave
    # it waiting on a thread that has ended: cancel until it is done.
    for _ in range(5):
        if not leftovers:
            return
        for task in leftovers:
            task.cancel()
        _done, pending = await asyncio.wait(leftovers, timeout=1.0)
        leftovers = list(pending)


def stop_loop_thread(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Stop the loop and close it: an unclosed loop keeps its epoll descriptor and its
    wake-up socket pair, three descriptors a test, until a long run runs out of them."""
    if loop.is_running():
        asyncio.run_coroutine_threadsafe(_drain_third_party_leftovers(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    if not thread.is_alive():
        loop.close()  # callable from inside another running loop (an async test)
