"""An asyncio loop run in a thread of its own, for test servers that sync clients
(imaplib, poplib, sievelib) talk to."""

from __future__ import annotations

import asyncio
import threading

from cryptmail.db import end_driver_leftovers


def start_loop_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return loop, thread


def stop_loop_thread(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Stop the loop and close it: an unclosed loop keeps its epoll descriptor and its
    wake-up socket pair, three descriptors a test, until a long run runs out of them."""
    if loop.is_running():
        # As serve does before it exits: else the loop closed by hand
        # would log SQLAlchemy's leftover close of a broken-off connection as destroyed.
        asyncio.run_coroutine_threadsafe(end_driver_leftovers(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    if not thread.is_alive():
        loop.close()  # callable from inside another running loop (an async test)
