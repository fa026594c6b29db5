"""One LMTP worker process (started as `python -m cryptmail.serve._worker_process`).

It serves the listening socket its parent bound, with the parent's configuration (sent
as a pickle on its stdin, since it may hold a database password: never on the command
line). Its blocking calls run in place on its loop (`block_in_place`) unless blobs go to
S3. It is told to stop (SIGTERM) when the main process dies, even by SIGKILL: it then
stops accepting at once and finishes the deliveries in flight, as `serve` does on
SIGTERM. With `lmtp.process_idle_s` > 0 it also stops so, exit code 0, once it has held
no connection for that long (workers on demand). See `_lmtp_workers` for the parent's
side.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import pickle
import signal
import socket
import sys
import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.concurrency import block_in_place, run_blocking
from cryptmail.config import Config
from cryptmail.db import create_engine, end_driver_leftovers
from cryptmail.delivery import (
    ConnectionShares,
    DeliveryHandler,
    Limits,
    LmtpServer,
    sieve_delivery,
)
from cryptmail.keys import install_server_key, load_server_key
from cryptmail.logs import use_format
from cryptmail.metrics import PipeMetrics, install_metrics
from cryptmail.serve._hardening import forbid_core_dumps
from cryptmail.serve._memory import settle_gc, tune_malloc
from cryptmail.sieve import read_active_sync
from cryptmail.store import ChangePublisher, PipePublisher
from cryptmail.store.blobs import BlobStore, open_blob_store

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
WORKER_NAME = "cryptmail-lmtp"
"""A worker's process name (`/proc/PID/comm`: what `ps` and `top` show)."""


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs from the main process, sent over its stdin."""

    config: Config
    log_format: str
    log_levels: dict[str, int]
    grace_s: float


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
    # The file the main process made or read at its start: never sent over the pipe.
    install_server_key(load_server_key(config.server_key_path))
    if config.blobs.backend == "local":
        block_in_place()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    engine = create_engine(config.database_url)
    try:
        blobs = await run_blocking(open_blob_store, config)
        server = lmtp_server(config, engine, blobs, PipePublisher(notify_fd), shares, sock)
        await server.start()
        settle_gc()
        tune_malloc()
        idle_s = config.lmtp.process_idle_s
        idle = asyncio.create_task(_stop_when_idle(shares, idle_s, stop)) if idle_s else None
        await stop.wait()
        if idle is not None:
            idle.cancel()
        await server.stop(setup.grace_s)
    finally:
        await engine.dispose()
        await end_driver_leftovers()  # else asyncio.run could wait on one for ever
    return 0


def lmtp_server(
    config: Config,
    engine: AsyncEngine,
    blobs: BlobStore,
    bus: ChangePublisher,
    shares: ConnectionShares,
    sock: socket.socket,
    hostname: str = "",
) -> LmtpServer:
    """The LMTP server of one delivering process (a worker, or the main process with
    workers on demand) on the shared listener `sock`, its slot in `shares`; `hostname`
    for its greeting (empty: looked up, which may wait on DNS)."""
    handler = DeliveryHandler(
        engine,
        blobs,
        config.data_path / "spool",
        bus=bus,
        quota_warnings=config.quota.warnings,
        message_limit=config.quota.messages,
        # Users' active scripts from the sealed store ManageSieve writes.
        sieve=sieve_delivery(engine, config, read_active_sync),
        recipient_delimiter=config.lmtp.recipient_delimiter,
        recipient_cache_s=config.lmtp.recipient_cache_s,
    )
    return LmtpServer(
        handler,
        hostname=hostname,
        limits=Limits(max_message_bytes=config.lmtp.max_message_bytes),
        max_connections=config.lmtp.max_connections,
        shares=shares,
        sockets=[sock],
    )


async def _stop_when_idle(shares: ConnectionShares, idle_s: float, stop: asyncio.Event) -> None:
    """Set `stop` once this worker has held no connection for `idle_s` seconds."""
    last_busy = time.monotonic()
    while True:
        await asyncio.sleep(min(1.0, idle_s / 4))
        now = time.monotonic()
        if shares.held():
            last_busy = now
        elif now - last_busy >= idle_s:
            log.info("LMTP worker %d idle for %.0f s: exiting", os.getpid(), idle_s)
            stop.set()
            return


def main(argv: list[str]) -> int:
    """A worker: `LISTEN_FD NOTIFY_FD SHARES_FD SLOTS SLOT PARENT_PID METRICS_FD`, its
    WorkerSetup on stdin."""
    listen_fd, notify_fd, shares_fd, slots, slot, parent_pid, metrics_fd = (
        int(arg) for arg in argv
    )
    # Our parent wrote it into a pipe it made for us: nothing else can reach this stdin.
    setup: WorkerSetup = pickle.loads(sys.stdin.buffer.read())  # noqa: S301
    fds = WorkerFds(listen_fd, notify_fd, shares_fd, metrics_fd)
    return run_worker(setup, fds, slots, slot, parent_pid)


@dataclass(frozen=True)
class WorkerFds:
    """The descriptors a worker serves with: the LMTP listener, the pipe to the main
    process's change bus, the connection shares, the pipe to its metrics."""

    listen: int
    notify: int
    shares: int
    metrics: int


def run_worker(setup: WorkerSetup, fds: WorkerFds, slots: int, slot: int, parent_pid: int) -> int:
    """Serve LMTP as worker `slot` of `slots` until SIGTERM, or until `parent_pid` dies;
    return the exit code. Run by `main` in a new interpreter, or in a child `serve`
    forked at its start (`_prefork`)."""
    ctypes.CDLL(None).prctl(_PR_SET_NAME, WORKER_NAME.encode(), 0, 0, 0)
    metrics = PipeMetrics(fds.metrics)
    install_metrics(metrics)
    os.umask(0o077)
    logging.basicConfig(format=setup.log_format, stream=sys.stderr)
    use_format(setup.config.log_format)
    for name, level in setup.log_levels.items():
        logging.getLogger(name or None).setLevel(level)
    forbid_core_dumps()  # execve made this process dumpable again
    _stop_with_parent(parent_pid)
    sock = socket.socket(fileno=fds.listen)
    sock.setblocking(False)
    try:
        shares = ConnectionShares(fds.shares, slots, slot)
        return asyncio.run(_serve(setup, sock, fds.notify, shares))
    except KeyboardInterrupt:
        return 0
    finally:
        metrics.flush()  # the events of the last FLUSH_S, kept for a timer that is gone
