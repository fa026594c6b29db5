"""LMTP workers forked before anything runs, so that they share the interpreter's pages.

A worker started with `python -m` imported Python, SQLAlchemy, cryptography and
cryptmail again: about 40 MB of private memory in each, the same bytes in every process.
`serve` instead forks its workers first thing (`prefork_workers`), while nothing runs
yet that a fork may not carry (no thread, no event loop, no database connection), with
everything a worker runs imported already and the collector's objects frozen
(`gc.freeze`: a later collection in any of the processes does not write to their
headers, which would copy the pages). The pages of the imported code then stay shared
by the main process and every worker until one of them writes to a page.

A forked worker is dormant until the main process has bound the LMTP listener: it waits
on a socket pair for its setup (pickled) and its descriptors (SCM_RIGHTS), then serves
(`run_worker`); at the end of the socket pair without a request it exits. It is a child
of the main process like a worker started with `python -m`, and stops with it
(PR_SET_PDEATHSIG). A worker that dies is replaced by a new interpreter (the main
process runs threads and a loop by then: no fork). A zygote process kept for those
restarts was measured and dropped: the pages every other process had copied stayed
in it alone, 26-32 MB of PSS for nothing. `ps` shows the workers as `cryptmail-lmtp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import encodings.idna  # noqa: F401 - see prefork_workers
import gc
import logging
import os
import pickle
import signal
import socket
import sys
import threading
import traceback

from sqlalchemy.engine import make_url

from cryptmail.db import async_url
from cryptmail.serve._lmtp_worker import WorkerFds, WorkerSetup, run_worker

log = logging.getLogger(__name__)

_MAX_REQUEST = 1 << 20
_PR_SET_PDEATHSIG = 1


class ForkedWorker:
    """A running pre-forked worker: what `LmtpWorkers` uses of a `subprocess.Popen`."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code once the worker has ended (it is reaped then), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -signal.SIGKILL  # reaped elsewhere: gone all the same
            else:
                if pid == self.pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        # Not reaped yet (returncode None): the pid is still ours, never another's.
        if self.returncode is None:
            os.kill(self.pid, signum)


class DormantWorker:
    """A forked child waiting for its setup; `wake` makes it an LMTP worker."""

    def __init__(self, pid: int, sock: socket.socket):
        self.pid = pid
        self._sock = sock
        self._used = False

    def wake(self, setup: WorkerSetup, fds: WorkerFds, slots: int, slot: int) -> ForkedWorker:
        """Send the worker its setup and descriptors. Raises OSError when it is gone."""
        self._used = True
        try:
            request = pickle.dumps((setup, slots, slot))
            socket.send_fds(
                self._sock, [request], [fds.listen, fds.notify, fds.shares, fds.metrics]
            )
        finally:
            self._sock.close()
        return ForkedWorker(self.pid)

    def dismiss(self) -> None:
        """Let a worker that was not woken exit (it does at the end of its socket pair),
        and reap it; nothing for one woken or dismissed already."""
        if self._used:
            return
        self._used = True
        self._sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def prefork_workers(count: int, database_url: str | None = None) -> list[DormantWorker]:
    """Fork `count` dormant workers; none where a fork is not safe here (a thread runs),
    and the workers then start as new interpreters.

    Call it before any thread, event loop or database connection exists, once
    everything a worker runs is imported (this module imports it); `database_url`'s
    SQLAlchemy dialect and driver are imported here."""
    if threading.active_count() > 1:
        log.warning("LMTP workers start as new interpreters: a thread runs already")
        return []
    if database_url is not None:
        _import_dialect(database_url)
    # An event loop run once, and the IDNA codec (which every process's first socket
    # name lookup imports) imported: their first-use set-up is then shared, not written
    # over shared pages by each process.
    asyncio.run(asyncio.sleep(0))
    # Everything alive now is shared with the workers: a collection in any process must
    # not write to these objects' headers, copying the pages.
    gc.collect()
    gc.freeze()
    parent = os.getpid()
    workers: list[DormantWorker] = []
    for _ in range(count):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child; tests see it from outside
            code = 1
            try:
                ours.close()
                for earlier in workers:
                    earlier._sock.close()
                code = _dormant(theirs, parent)
            except BaseException:
                traceback.print_exc()
            finally:
                logging.shutdown()
                sys.stderr.flush()
                os._exit(code)
        theirs.close()
        workers.append(DormantWorker(pid, ours))
    return workers


def _import_dialect(database_url: str) -> None:
    """Import the dialect and driver modules of the database in use, which every process
    imports when it makes its engine: imported before the fork, each is in memory once
    (after it, once in each process). The other dialects stay unimported."""
    dialect = make_url(async_url(database_url)).get_dialect()
    dialect.import_dbapi()


def _dormant(sock: socket.socket, parent: int) -> int:  # pragma: no cover - in the child
    # ^C in a terminal reaches the whole group: until it serves, the main process decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        return 0
    data, fds, _flags, _address = socket.recv_fds(sock, _MAX_REQUEST, 4)
    sock.close()
    if not data:
        return 0  # serve stopped before it needed this worker
    setup, slots, slot = pickle.loads(data)  # noqa: S301 - our parent wrote it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return run_worker(setup, WorkerFds(*fds), slots, slot, parent)
