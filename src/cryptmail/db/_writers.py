"""The writer turn of a SQLite file: its writers one at a time, across processes.

The threads of a process queue on a lock, the processes on an `flock` of
`<database>-writers` (opened on first use; the kernel drops the flock if a process dies
holding it). See `_engine` for why writers queue at all.

A writer waits WRITER_WAIT_S at most. A process stopped or hung while it holds the turn
(SIGSTOP, a disk that stopped answering) would otherwise freeze every other writer for
good, and an LMTP worker, which waits on its loop, with all its connections; past the
deadline the writer gets DatabaseUnavailable, a 4xx to a delivery.

The kernel has no timed flock, so a turn that is not free at once is waited for in one
of two ways:
- On the main thread (an LMTP worker, which writes on its loop): in flock, with SIGALRM
  set for the deadline, whose handler's exception ends the wait. A few syscalls more
  than a plain wait, no thread woken. Not while another timer of the process runs;
  the handler, installed at the first such wait, stays (nothing else here uses
  SIGALRM) and ignores an alarm outside a wait.
- On any other thread (the main process's writers, the CLI's): by a waiter thread,
  blocked in flock on a descriptor of its own (an open file of its own, so that its
  lock excludes this process's other writers as another process's would), while the
  writer waits for that thread with a timeout. The waiter threads are daemons: a wait
  given up may stay blocked until the holder goes, and must not keep its process from
  exiting meanwhile (a CLI command that printed the error).
Polling instead (LOCK_NB and growing pauses) cost 2-3 % of delivery msg/s at 8
connections, and the waiter thread for the workers' waits about 2 % (bench rounds, 4 KB,
servers taking turns, 2026-12-07): the kernel hands a released flock to a blocked
waiter at once; a poller finds it only at its next try, and a waiter thread has to wake
the writer.
"""

from __future__ import annotations

import fcntl
import os
import queue
import signal
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager

from cryptmail.errors import DatabaseUnavailable

WRITER_WAIT_S = 30.0
"""How long a write transaction on a SQLite file waits for its turn among the writers
before DatabaseUnavailable; also the connections' busy_timeout (`_engine`), SQLite's own
wait for its lock."""
_WAITERS = 4
"""Waiter threads of a process: one per thread of it that writes at once is enough; a
wait given up holds its thread until the holder goes, and waits beyond these queue."""


class WriteQueue:
    """The writers of one SQLite file, in turn (see the module's note)."""

    def __init__(self, database: str) -> None:
        self._path = database + "-writers"
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._closer: weakref.finalize[[int], WriteQueue] | None = None

    @contextmanager
    def turn(self, wait_s: float | None = None) -> Iterator[None]:
        """Hold the turn for the block; `wait_s` (default WRITER_WAIT_S) bounds the wait.
        Raises DatabaseUnavailable when it passes."""
        wait_s = WRITER_WAIT_S if wait_s is None else wait_s
        deadline = time.monotonic() + wait_s
        if not self._threads.acquire(timeout=wait_s):
            raise self._busy(wait_s)
        try:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                holder = fd
            except BlockingIOError:
                if _alarm_is_ours():
                    self._wait_alarmed(fd, deadline, wait_s)
                    holder = fd
                else:
                    holder = self._wait(deadline, wait_s)
            try:
                yield
            finally:
                if holder == fd:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                else:
                    os.close(holder)  # its only descriptor: the lock goes with it
        finally:
            self._threads.release()

    def close(self) -> None:
        """Close the flock's descriptor (the engine was disposed); the next turn opens
        it again."""
        with self._threads:
            if self._closer is not None:
                self._closer()  # closes once; the finalizer never closes a reused number
            self._fd = self._closer = None

    def _open(self) -> int:
        if self._fd is None:
            self._fd = self._open_new()
            self._closer = weakref.finalize(self, os.close, self._fd)
        return self._fd

    def _open_new(self) -> int:
        try:
            return os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"cannot open the database's writer queue {self._path}: {exc.strerror}"
            ) from exc

    def _wait(self, deadline: float, wait_s: float) -> int:
        """The turn, taken by a waiter thread on a new descriptor, which is returned
        holding it. At the deadline the waiter is left to close that descriptor when
        its flock returns, which gives the turn back at once."""
        waiter = self._open_new()
        taken = _waiters.lock(waiter)
        try:
            taken.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            if taken.cancel():  # never started: no lock to give back
                os.close(waiter)
            else:
                taken.add_done_callback(lambda _: os.close(waiter))
            raise self._busy(wait_s) from None
        except OSError as exc:
            os.close(waiter)
            raise DatabaseUnavailable(
                f"cannot lock the database's writer queue {self._path}: {exc.strerror}"
            ) from exc
        return waiter

    def _wait_alarmed(self, fd: int, deadline: float, wait_s: float) -> None:
        """The turn on `fd`, waited for in flock on the main thread, with SIGALRM at the
        deadline: the handler's exception ends the flock (PEP 475 retries it only after
        a handler that returns). The alarm may also come just after the flock returned;
        the turn is then given back, which is harmless if it was not taken.

        The kernel hands a process's SIGALRM to its main thread while that thread
        sleeps with no other signal pending, as it does here; were it given to another
        thread, the flock would go on until the turn is free (the wait without a
        deadline of before). 40 waits of 50 ms beside five busy threads all ended
        in time."""
        global _armed
        left = max(deadline - time.monotonic(), 1e-6)
        if signal.getsignal(signal.SIGALRM) is not _alarm:
            # Installed for good, not put back after: a SIGALRM still on its way when
            # SIG_DFL was back would end the process.
            signal.signal(signal.SIGALRM, _alarm)
        try:
            _armed = True
            try:
                signal.setitimer(signal.ITIMER_REAL, left)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            finally:
                _armed = False
        except _Alarm:
            fcntl.flock(fd, fcntl.LOCK_UN)
            raise self._busy(wait_s) from None

    def _busy(self, wait_s: float) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"the database stayed busy: another writer held its turn ({self._path}) for "
            f"{wait_s:g} s; is a cryptmail process stopped or hung? Try again later"
        )


def _alarm_is_ours() -> bool:
    """Whether this thread may set SIGALRM: the main thread, while no one else's timer
    runs (pytest-timeout's, in the tests; nothing of cryptmail's)."""
    return (
        threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )


class _Alarm(Exception):
    """The deadline of a writer's wait in flock on the main thread."""


_armed = False
"""Whether a wait in `_wait_alarmed` runs: a SIGALRM at any other time is ignored."""


def _alarm(_signum: int, _frame: object) -> None:
    if _armed:
        raise _Alarm


class _Waiters:
    """Daemon threads that each take an flock for whoever asked (`lock`), started on
    first use. Not a ThreadPoolExecutor: its threads are joined at exit."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._jobs: queue.SimpleQueue[tuple[int, Future[None]]] = queue.SimpleQueue()
        self._started = 0
        self._start_lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        """In a forked child: no thread came along, so none serves the jobs."""
        self._jobs = queue.SimpleQueue()
        self._started = 0
        self._start_lock = threading.Lock()

    def lock(self, fd: int) -> Future[None]:
        """A future done once `fd` holds an exclusive flock (or with the OSError)."""
        with self._start_lock:
            if self._started < self._count:
                self._started += 1
                threading.Thread(target=self._serve, name="writer-turn", daemon=True).start()
        done: Future[None] = Future()
        self._jobs.put((fd, done))
        return done

    def _serve(self) -> None:
        while True:
            fd, done = self._jobs.get()
            if not done.set_running_or_notify_cancel():
                continue  # given up before it started; the writer closed fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)


_waiters = _Waiters(_WAITERS)
