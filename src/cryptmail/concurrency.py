"""The async boundary: the one place that sends blocking work off the event loop.

`run_blocking` is for short blocking calls (fsync, SQL drivers without async, a few EC
operations). `run_kdf` is for Argon2, on its own bounded pool so that a login storm
queues instead of exhausting memory, and on a bounded queue: past `max_queued` waiting
it raises KdfBusy at once, so a flood cannot starve real logins behind an endless queue.

A process that does one thing at a time (an LMTP worker of `serve`) calls
`block_in_place()`: its blocking calls then run right on the loop. Handing each one to a
thread and back cost more CPU than many of the calls themselves (waking the thread,
passing the GIL back and forth), a third of a delivery's CPU when measured. A call that
waits long for the disk (the fsync of a big blob) goes through `run_in_thread`, so the
process serves its other connections meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from cryptmail.errors import KdfBusy
from cryptmail.metrics import current as current_metrics

P = ParamSpec("P")
R = TypeVar("R")

_kdf_lock = threading.Lock()
_kdf_pool: ThreadPoolExecutor | None = None
_kdf_workers = 4
_kdf_max_queued = 256  # crypto.argon2.max_queued's default
_kdf_load = 0  # derivations running or waiting, under _kdf_lock
_in_place = False
_calling_back_lock = threading.Lock()
_calling_back_pool: ThreadPoolExecutor | None = None
_CALLING_BACK_WORKERS = 4


def block_in_place() -> None:
    """From now on `run_blocking` runs its call on the calling thread, blocking the loop."""
    global _in_place
    _in_place = True


def configure_kdf_pool(max_concurrent: int, max_queued: int = 256) -> None:
    """Size the Argon2 pool and its queue (crypto.argon2.max_concurrent, max_queued).
    Call before serving."""
    global _kdf_pool, _kdf_workers, _kdf_max_queued
    with _kdf_lock:
        if _kdf_pool is not None:
            _kdf_pool.shutdown(wait=False)
            _kdf_pool = None
        _kdf_workers = max_concurrent
        _kdf_max_queued = max_queued


def kdf_load() -> int:
    """Derivations running or waiting now."""
    return _kdf_load


def _get_kdf_pool() -> ThreadPoolExecutor:
    global _kdf_pool
    with _kdf_lock:
        if _kdf_pool is None:
            # argon2-cffi releases the GIL during hashing, so threads run in parallel.
            _kdf_pool = ThreadPoolExecutor(max_workers=_kdf_workers, thread_name_prefix="kdf")
        return _kdf_pool


async def run_blocking(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a blocking call in the default thread pool (or in place, see above)."""
    if _in_place:
        return func(*args, **kwargs)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(func, *args, **kwargs))


async def run_in_thread(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a blocking call in the default thread pool, also in a process that blocks in
    place: for calls that mostly wait (the disk writing a big blob)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(func, *args, **kwargs))


async def run_calling_back(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a blocking call that waits on the event loop itself (SEARCH's evaluation asks
    the loop for blob reads, which go to the default pool) on a pool of its own: on the
    default pool, a few such calls at once took every thread, and the reads they waited
    for had none left (a deadlock seen with several sessions searching)."""
    global _calling_back_pool
    with _calling_back_lock:
        if _calling_back_pool is None:
            _calling_back_pool = ThreadPoolExecutor(
                max_workers=_CALLING_BACK_WORKERS, thread_name_prefix="calling-back"
            )
        pool = _calling_back_pool
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool, functools.partial(func, *args, **kwargs))


async def run_kdf(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a password derivation (Argon2) on the bounded KDF pool.

    Raises KdfBusy, without running it, when `max_queued` derivations already wait.
    """
    global _kdf_load
    pool = _get_kdf_pool()
    with _kdf_lock:
        if _kdf_load >= _kdf_workers + _kdf_max_queued:
            raise KdfBusy()
        _kdf_load += 1
    queued_at = time.monotonic()

    def timed() -> R:
        # The wait (for a free Argon2 worker) is what a login storm makes grow.
        current_metrics().argon2_wait(time.monotonic() - queued_at)
        return func(*args, **kwargs)

    try:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, timed)
    finally:
        with _kdf_lock:
            _kdf_load -= 1
