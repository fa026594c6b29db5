"""LMTP workers forked from a zygote, so that they share the interpreter's pages.

A worker started with `python -m` imported Python, SQLAlchemy, cryptography and
cryptmail again: about 40 MB of private memory in each, the same bytes in every process.
`serve` instead forks one small process, the zygote, before it starts anything (no
thread, no event loop, no database connection: what a fork may not carry), with
everything a worker runs imported already and the collector's objects frozen
(`gc.freeze`: a later collection in a child does not write to their pages). The zygote
forks each worker, at the start and again when one dies; the pages of the imported code
stay shared by the main process, the zygote and every worker until one writes to them.

The zygote only forks and reaps. The main process asks over a socket pair (a pickled
request, the worker's descriptors passed with SCM_RIGHTS) and hears each worker's pid
and, when it ends, its exit code. The workers are the zygote's children: it signals them
for the main process, and the kernel sends SIGTERM down the chain when the process above
dies (PR_SET_PDEATHSIG), the zygote when the main process dies, each worker when the
zygote dies, so no worker outlives `serve`. `ps` names the zygote `cryptmail-spawn` and
the workers `cryptmail-lmtp`.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import pickle
import selectors
import signal
import socket
import sys
import threading
import traceback
from typing import Any

from cryptmail.serve._hardening import forbid_core_dumps
from cryptmail.serve._lmtp_worker import WorkerFds, WorkerSetup, run_worker

log = logging.getLogger(__name__)

ZYGOTE_NAME = "cryptmail-spawn"
WORKER_NAME = "cryptmail-lmtp"
"""The process names (`/proc/PID/comm`, what `ps` and `top` show) of the two kinds."""
_MAX_MESSAGE = 1 << 20
_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1


class ZygoteGone(OSError):
    """The zygote exited (killed, or out of memory): no worker can be forked from it."""


def _set_name(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_NAME, name.encode(), 0, 0, 0)


class ForkedWorker:
    """A worker the zygote forked: what `LmtpWorkers` uses of a `subprocess.Popen`."""

    def __init__(self, zygote: Zygote, pid: int):
        self._zygote = zygote
        self.pid = pid

    def poll(self) -> int | None:
        """The exit code once the worker has ended, else None."""
        return self._zygote.exit_code(self.pid)

    def terminate(self) -> None:
        self._zygote.signal(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        self._zygote.signal(self.pid, signal.SIGKILL)


class Zygote:
    """The main process's side of the zygote: fork workers, hear of their ends."""

    def __init__(self, pid: int, sock: socket.socket):
        self.pid = pid
        self._sock = sock
        self._exits: dict[int, int] = {}
        self._gone = False

    @property
    def alive(self) -> bool:
        return not self._gone

    def spawn(self, setup: WorkerSetup, fds: WorkerFds, slots: int, slot: int) -> ForkedWorker:
        """Fork worker `slot` of `slots` serving `fds`. Raises ZygoteGone.

        Waits for the zygote's answer (a fork of a process that shares nearly all its
        pages: about a millisecond), on the caller's thread."""
        request = pickle.dumps(("spawn", setup, slots, slot))
        descriptors = [fds.listen, fds.notify, fds.shares, fds.metrics]
        try:
            socket.send_fds(self._sock, [request], descriptors)
            while True:
                reply = self._receive(block=True)
                if reply[0] == "spawned":
                    return ForkedWorker(self, int(reply[1]))
        except OSError as exc:
            self._gone = True
            raise ZygoteGone(exc.errno, f"the LMTP zygote {self.pid} is gone: {exc}") from exc

    def exit_code(self, pid: int) -> int | None:
        """`pid`'s exit code once the zygote reaped it; -9 for every worker once the
        zygote itself is gone (its workers got SIGTERM then)."""
        # Nothing more to read (BlockingIOError) or the zygote gone (another OSError).
        with contextlib.suppress(OSError):
            while not self._gone:
                self._receive(block=False)
        if self._gone:
            return self._exits.get(pid, -signal.SIGKILL)
        return self._exits.get(pid)

    def signal(self, pid: int, signum: int) -> None:
        """Have the zygote send `signum` to its child `pid` (none once it is reaped)."""
        if self._gone:
            return
        try:
            self._sock.send(pickle.dumps(("signal", pid, signum)))
        except OSError:
            self._gone = True

    def close(self) -> None:
        """Close the socket (the zygote exits on its end) and reap the zygote."""
        self._sock.close()
        self._gone = True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def _receive(self, *, block: bool) -> tuple[Any, ...]:
        data = self._sock.recv(_MAX_MESSAGE, 0 if block else socket.MSG_DONTWAIT)
        if not data:
            self._gone = True
            raise ConnectionResetError("the zygote closed its socket")
        # Our own child wrote it, on a socket pair nothing else holds.
        message: tuple[Any, ...] = pickle.loads(data)  # noqa: S301
        if message[0] == "exited":
            self._exits[int(message[1])] = int(message[2])
        return message


def fork_zygote() -> Zygote | None:
    """Fork the zygote; None where a fork is not safe here (another thread runs), and
    the workers are then started with `python -m` as before.

    Call it before any thread, event loop or database connection exists, once
    everything a worker runs is imported (this module imports it)."""
    if threading.active_count() > 1:
        log.warning("LMTP workers start as new interpreters: a thread runs already")
        return None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # Everything alive now is shared with the zygote and every worker: a collection
    # in any of them must not write to these objects' headers, unsharing the pages.
    gc.collect()
    gc.freeze()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child; tests see it from outside
        ours.close()
        code = 1
        try:
            code = _zygote_main(theirs, parent)
        except BaseException:
            traceback.print_exc()
        finally:
            logging.shutdown()
            os._exit(code)
    theirs.close()
    return Zygote(pid, ours)


def _zygote_main(sock: socket.socket, parent: int) -> int:  # pragma: no cover - in the child
    _set_name(ZYGOTE_NAME)
    # ^C in a terminal reaches the whole group: the main process stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        return 0
    forbid_core_dumps()
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    children: set[int] = set()
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        selector.register(wake_read, selectors.EVENT_READ)
        while True:
            for key, _events in selector.select():
                if key.fileobj == wake_read:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(wake_read, 512):
                            pass
                    continue
                data, fds, _flags, _address = socket.recv_fds(sock, _MAX_MESSAGE, 4)
                if not data:
                    return 0  # the main process closed its end: serve stops
                request = pickle.loads(data)  # noqa: S301 - our parent wrote it
                if request[0] == "spawn":
                    _, setup, slots, slot = request
                    pid = _fork_worker(
                        setup, WorkerFds(*fds), slots, slot, [sock, wake_read, wake_write]
                    )
                    for fd in fds:
                        os.close(fd)
                    children.add(pid)
                    sock.send(pickle.dumps(("spawned", pid)))
                elif request[0] == "signal" and request[1] in children:
                    os.kill(request[1], request[2])
            _reap(sock, children)


def _reap(sock: socket.socket, children: set[int]) -> None:  # pragma: no cover - in the child
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        sock.send(pickle.dumps(("exited", pid, os.waitstatus_to_exitcode(status))))


def _fork_worker(
    setup: WorkerSetup, fds: WorkerFds, slots: int, slot: int, close: list[Any]
) -> int:  # pragma: no cover - in the child
    zygote = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for item in close:
            if isinstance(item, int):
                os.close(item)
            else:
                item.close()
        _set_name(WORKER_NAME)
        code = run_worker(setup, fds, slots, slot, zygote)
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        sys.stderr.flush()
        os._exit(code)
