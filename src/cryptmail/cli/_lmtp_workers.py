"""`serve`'s LMTP worker processes: how the main process starts and watches them, and
what each one runs (`python -m cryptmail.cli._lmtp_workers`).

A delivery is mostly Python, and one process runs Python on one core at a time, so one
process delivered about as fast on eight connections as on one. So the main process
binds the LMTP listener and hands it to `lmtp.processes` workers (by default one per
core, at least two); a new connection goes to the one holding the fewest
(`ConnectionShares`). As in Dovecot's lmtp processes, a worker does one thing at a
time: its blocking calls (file writes, fsync, SQLite) run in place on its loop
(`block_in_place`), which cut a delivery's CPU by about a third against handing each
to a thread. With blobs on S3, where a call waits on the network, they still go to
threads.

A worker only delivers. Its IDLE notifications go through a pipe to the main process's
change bus (`PipePublisher`, `ChangeForwarder`); the SQLite writers of all processes
queue on one `flock` (`db.run_transaction`). A worker gets its configuration (which may
hold a database password) as a pickle on its stdin, never on its command line, and it
is told to stop (SIGTERM) when the main process dies, even by SIGKILL: it then stops
accepting at once and finishes the deliveries in flight, as `serve` does on SIGTERM.
A worker that dies is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from cryptmail.cli._memory import settle_gc, tune_malloc
from cryptmail.concurrency import block_in_place, run_blocking
from cryptmail.config import Config
from cryptmail.db import create_engine
from cryptmail.delivery import ConnectionShares, DeliveryHandler, Limits, LmtpServer
from cryptmail.store import ChangeBus, ChangeForwarder, PipePublisher
from cryptmail.store.blobs import open_blob_store

log = logging.getLogger(__name__)

WATCH_EVERY_S = 1.0
MAX_RESTART_DELAY_S = 60.0
QUICK_EXIT_S = 10.0
"""A worker that exits sooner than this after its start counts as failing at start:
its next start waits longer, so a broken setup does not restart in a tight loop."""
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs from the main process, sent over its stdin."""

    config: Config
    log_format: str
    log_levels: dict[str, int]
    grace_s: float


def logger_levels() -> dict[str, int]:
    """The levels set on the root logger and any named logger (quietened drivers)."""
    levels = {"": logging.getLogger().level}
    for name, found in logging.root.manager.loggerDict.items():
        if isinstance(found, logging.Logger) and found.level != logging.NOTSET:
            levels[name] = found.level
    return levels


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    slot: int
    started: float


class LmtpWorkers:
    """Worker processes serving `sock`, one for each slot of `shares`, started again
    when one dies."""

    def __init__(
        self, setup: WorkerSetup, sock: socket.socket, shares: ConnectionShares, bus: ChangeBus
    ):
        self._setup = setup
        self._sock = sock
        self._shares = shares
        self._bus = bus
        self._workers: list[_Worker] = []
        self._forwarder: ChangeForwarder | None = None
        self._notify_write = -1
        self._quick_exits = 0
        self._restart_at = 0.0

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

    def start(self) -> None:
        """Start the workers. Must run on the main thread: a worker is told to stop
        when the thread that started it ends (PR_SET_PDEATHSIG)."""
        read_end, self._notify_write = os.pipe()
        self._forwarder = ChangeForwarder(read_end, self._bus)
        self._workers = [self._spawn(slot) for slot in range(self._shares.slots)]
        log.info("LMTP worker processes started: %s", ", ".join(map(str, self.pids)))

    def _spawn(self, slot: int) -> _Worker:
        self._shares.reset(slot)
        fds = (self._sock.fileno(), self._notify_write, self._shares.fd)
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                __name__,
                *map(str, fds),
                str(self._shares.slots),
                str(slot),
                str(os.getpid()),
            ],
            stdin=subprocess.PIPE,
            pass_fds=fds,
        )
        assert process.stdin is not None  # noqa: S101 - stdin=PIPE
        with process.stdin:
            # Small enough for the pipe's buffer: the write does not wait for the worker.
            process.stdin.write(pickle.dumps(self._setup))
        return _Worker(process, slot, time.monotonic())

    async def watch(self, shutdown: asyncio.Event) -> None:
        """Start a worker again when one exits, until `shutdown` is set."""
        while not shutdown.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(shutdown.wait(), WATCH_EVERY_S)
            if shutdown.is_set():
                return
            for index, worker in enumerate(self._workers):
                code = worker.process.poll()
                if code is None or time.monotonic() < self._restart_at:
                    continue
                lived = time.monotonic() - worker.started
                self._quick_exits = self._quick_exits + 1 if lived < QUICK_EXIT_S else 0
                delay = min(MAX_RESTART_DELAY_S, 2.0**self._quick_exits - 1)
                self._restart_at = time.monotonic() + delay
                log.warning(
                    "LMTP worker %d exited (%s) after %.0f s; starting another",
                    worker.process.pid,
                    code,
                    lived,
                )
                self._workers[index] = self._spawn(worker.slot)

    async def stop(self, grace_s: float) -> None:
        """SIGTERM every worker, wait up to `grace_s` for their deliveries, then SIGKILL."""
        for worker in self._workers:
            if worker.process.poll() is None:
                worker.process.terminate()
        self._sock.close()  # the workers' copies close as they stop accepting
        deadline = time.monotonic() + grace_s
        while any(w.process.poll() is None for w in self._workers):
            if time.monotonic() >= deadline:
                for worker in self._workers:
                    if worker.process.poll() is None:
                        log.warning("LMTP worker %d did not stop; killing it", worker.process.pid)
                        worker.process.kill()
                        await run_blocking(worker.process.wait)
                break
            await asyncio.sleep(0.05)
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None
        if self._notify_write >= 0:
            os.close(self._notify_write)
            self._notify_write = -1


def _stop_with_parent(parent_pid: int) -> None:
    """Ask the kernel for SIGTERM when the main process dies; if it already has, stop."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


async def _serve(
    setup: WorkerSetup, sock: socket.socket, notify_fd: int, shares: ConnectionShares
) -> int:
    config = setup.config
    if config.blobs.backend == "local":
        block_in_place()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    engine = create_engine(config.database_url)
    try:
        blobs = await run_blocking(open_blob_store, config)
        handler = DeliveryHandler(
            engine, blobs, config.data_path / "spool", bus=PipePublisher(notify_fd)
        )
        server = LmtpServer(
            handler,
            limits=Limits(max_message_bytes=config.lmtp.max_message_bytes),
            max_connections=config.lmtp.max_connections,
            shares=shares,
        )
        await server.serve_socket(sock)
        settle_gc()
        tune_malloc()
        await stop.wait()
        await server.stop(setup.grace_s)
    finally:
        await engine.dispose()
    return 0


def main(argv: list[str]) -> int:
    """A worker: `LISTEN_FD NOTIFY_FD SHARES_FD SLOTS SLOT PARENT_PID`, its WorkerSetup
    on stdin."""
    listen_fd, notify_fd, shares_fd, slots, slot, parent_pid = (int(arg) for arg in argv)
    # Our parent wrote it into a pipe it made for us: nothing else can reach this stdin.
    setup: WorkerSetup = pickle.loads(sys.stdin.buffer.read())  # noqa: S301
    os.umask(0o077)
    logging.basicConfig(format=setup.log_format, stream=sys.stderr)
    for name, level in setup.log_levels.items():
        logging.getLogger(name or None).setLevel(level)
    _stop_with_parent(parent_pid)
    sock = socket.socket(fileno=listen_fd)
    sock.setblocking(False)
    try:
        shares = ConnectionShares(shares_fd, slots, slot)
        return asyncio.run(_serve(setup, sock, notify_fd, shares))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
