"""LMTP in worker processes: the main process binds the listener, starts the workers
and starts one again when it dies.

A delivery is mostly Python, and one process runs Python on one core at a time, so one
process delivered about as fast on eight connections as on one. So the main process
binds the LMTP listener and hands it to `lmtp.processes` workers (by default two per
core); a new connection goes to the one holding the fewest
(`ConnectionShares`). As in Dovecot's lmtp processes, a worker does one thing at a
time: its blocking calls (file writes, fsync, SQLite) run in place on its loop
(`block_in_place`), which cut a delivery's CPU by about a third against handing each
to a thread. With blobs on S3, where a call waits on the network, they still go to
threads.

A worker only delivers. Its IDLE notifications go through a pipe to the main process's
change bus (`PipePublisher`, `ChangeForwarder`), its metric events through another to
the main process's registry (`PipeMetrics`, `MetricsReader`), so `/metrics` shows the
deliveries of every worker; the SQLite writers of all processes
queue on one `flock` (`db.run_transaction`). What a worker runs is `_lmtp_worker`: forked
by `serve` at its start (`_prefork`: the workers share the interpreter's pages with this
process), or a new interpreter started through `_worker_process`.

Workers on demand (`lmtp.process_idle_s` > 0, the default): no worker runs at the
start. When a connection waits and no worker runs, one starts (a new interpreter, about
0.9 s of CPU) and accepts it; while every worker holds a connection and one holds two
or a connection waits, another starts, up to `lmtp.processes`. One that held no
connection for `process_idle_s` exits, and one that dies is not replaced until
deliveries need it again. An idle `serve` is then this process alone: every worker
forked at the start cost 26 MiB of PSS at idle, though it shared the interpreter's
pages, since it kept the originals of every page this process wrote after the fork. A
worker started on demand has pages of its own (about 46 MiB of PSS against 26-32
forked). With `lmtp.deliver_in_main` this process delivers too, as the first of the
delivering processes (slot 0): no wait for a start, but its deliveries share its loop
with IMAP (their blocking calls go to threads) and mail is parsed where the unlocked
keys are. With `process_idle_s = 0` every worker is forked at the start and runs until
`serve` stops, one that dies is replaced at once, and this process does not deliver.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.concurrency import run_blocking
from cryptmail.delivery import ConnectionShares, LmtpServer
from cryptmail.metrics import MetricsReader
from cryptmail.metrics import current as current_metrics
from cryptmail.serve._lmtp_worker import WorkerFds, WorkerSetup, lmtp_server
from cryptmail.serve._prefork import DormantWorker
from cryptmail.sockets import bind_listener, socket_group_id, wait_readable
from cryptmail.store import ChangeBus, ChangeForwarder
from cryptmail.store.blobs import BlobStore
from cryptmail.tasks import cancel_and_wait

log = logging.getLogger(__name__)

WATCH_EVERY_S = 1.0
MAX_RESTART_DELAY_S = 60.0
QUICK_EXIT_S = 10.0
"""A worker that exits sooner than this after its start counts as failing at start:
its next start waits longer, so a broken setup does not restart in a tight loop."""
WORKER_MODULE = "cryptmail.serve._worker_process"
"""What a worker runs with `python -m`; named, not imported, so that runpy does not find
it imported already (see that module)."""
BIND_WAIT_S = 10.0
"""How long a restart waits for the LMTP port held by the workers of a killed `serve`,
which stop accepting at once but may still be finishing deliveries."""
DEMAND_EVERY_S = 0.1
"""While workers run on demand, how often this process looks whether another is needed
(their connection counts, in shared memory); with none running it waits on the listener."""


def logger_levels() -> dict[str, int]:
    """The levels set on the root logger and any named logger (quietened drivers)."""
    levels = {"": logging.getLogger().level}
    for name, found in logging.root.manager.loggerDict.items():
        if isinstance(found, logging.Logger) and found.level != logging.NOTSET:
            levels[name] = found.level
    return levels


class _Process(Protocol):
    """What the parent uses of a worker: a `subprocess.Popen` or a `ForkedWorker`."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


@dataclass
class _Worker:
    process: _Process
    slot: int
    started: float


class LmtpWorkers:
    """The LMTP listener of `serve`: worker processes serving `address`, one for each
    of `processes` slots, started again when one dies. A `serve.Listener`."""

    def __init__(
        self,
        setup: WorkerSetup,
        address: str,
        processes: int,
        bus: ChangeBus,
        dormant: list[DormantWorker] | None = None,
        *,
        engine: AsyncEngine | None = None,
        blobs: BlobStore | None = None,
    ):
        """`engine` and `blobs`: this process's, for its own deliveries with workers on
        demand and `lmtp.deliver_in_main`; without them every delivery is a worker's."""
        self._setup = setup
        self._dormant = list(dormant or [])
        self._address = address
        self._shares = ConnectionShares.create(processes)
        self._bus = bus
        self._sock: socket.socket | None = None
        self._on_demand = setup.config.lmtp.process_idle_s > 0
        self._in_main = self._on_demand and setup.config.lmtp.deliver_in_main
        if self._in_main and engine is None:
            raise ValueError("lmtp.deliver_in_main needs this process's engine and blobs")
        self._engine = engine
        self._blobs = blobs
        self._local: LmtpServer | None = None
        """This process's own LMTP server (slot 0), with workers on demand."""
        self._local_shares: ConnectionShares | None = None
        self._workers: dict[int, _Worker] = {}
        """The running workers by slot; on demand, a slot without one is vacant."""
        self._demand: asyncio.Task[None] | None = None
        self._forwarder: ChangeForwarder | None = None
        self._notify_write = -1
        self._metrics_reader: MetricsReader | None = None
        self._metrics_write = -1
        self._quick_exits = 0
        self._restart_at = 0.0
        self._watcher: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    @property
    def name(self) -> str:
        return f"LMTP on {self._address}"

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers.values()]

    async def start(self) -> None:
        """Bind the listener and start the workers. Raises ConfigError, OSError.

        Must run on the main thread: a worker is told to stop when the thread that
        started it ends (PR_SET_PDEATHSIG)."""
        config = self._setup.config
        group = socket_group_id(config.lmtp.socket_group, config.data_path)
        self._sock = await run_blocking(
            bind_listener, self._address, wait_s=BIND_WAIT_S, group=group
        )
        read_end, self._notify_write = os.pipe()
        self._forwarder = ChangeForwarder(read_end, self._bus)
        metrics_read, self._metrics_write = os.pipe()
        self._metrics_reader = MetricsReader(metrics_read, current_metrics())
        self._watcher = asyncio.create_task(self._watch())
        if self._on_demand:
            for slot in range(self._first_worker_slot, self._shares.slots):
                self._shares.vacate(slot)
            if self._in_main:
                await self._start_local()
            self._demand = asyncio.create_task(self._start_on_demand())
            log.info(
                "LMTP listening on %s (%sup to %d worker processes on demand)",
                self._address,
                "this process, and " if self._in_main else "",
                self._shares.slots - self._first_worker_slot,
            )
            return
        self._workers = {slot: self._spawn(slot) for slot in range(self._shares.slots)}
        log.info(
            "LMTP listening on %s (%d worker processes: %s)",
            self._address,
            self._shares.slots,
            ", ".join(map(str, self.pids)),
        )

    @property
    def _first_worker_slot(self) -> int:
        return 1 if self._in_main else 0

    async def _start_local(self) -> None:
        """This process's own LMTP server, slot 0 (`lmtp.deliver_in_main`)."""
        assert self._engine is not None and self._blobs is not None  # noqa: S101
        assert self._sock is not None  # noqa: S101 - only after start()
        # On a tie a running worker takes the connection: its deliveries do not share
        # a loop with IMAP and block in place (a third less CPU than threads).
        self._local_shares = ConnectionShares(self._shares.fd, self._shares.slots, 0, yields=True)
        # Off the loop: the name lookup may wait on DNS, and IMAP runs on this loop.
        hostname = await run_blocking(socket.getfqdn)
        self._local = lmtp_server(
            self._setup.config,
            self._engine,
            self._blobs,
            self._bus,
            self._local_shares,
            self._sock,
            hostname,
        )
        await self._local.start()

    def _spawn(self, slot: int) -> _Worker:
        assert self._sock is not None  # noqa: S101 - only after start()
        self._shares.reset(slot)
        fds = (self._sock.fileno(), self._notify_write, self._shares.fd, self._metrics_write)
        while self._dormant:
            dormant = self._dormant.pop(0)
            try:
                forked = dormant.wake(self._setup, WorkerFds(*fds), self._shares.slots, slot)
                return _Worker(forked, slot, time.monotonic())
            except OSError as exc:  # it died meanwhile: the next, or a new interpreter
                log.warning("pre-forked LMTP worker %d is gone: %s", dormant.pid, exc)
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                WORKER_MODULE,
                *map(str, fds[:3]),
                str(self._shares.slots),
                str(slot),
                str(os.getpid()),
                str(self._metrics_write),
            ],
            stdin=subprocess.PIPE,
            pass_fds=fds,
        )
        assert process.stdin is not None  # noqa: S101 - stdin=PIPE
        with process.stdin:
            # Small enough for the pipe's buffer: the write does not wait for the worker.
            process.stdin.write(pickle.dumps(self._setup))
        return _Worker(process, slot, time.monotonic())

    async def _watch(self) -> None:
        """Reap the workers that exit, until cancelled by `stop`: start another at once
        (workers always running), or leave the slot to `_start_on_demand`."""
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            for slot, worker in list(self._workers.items()):
                code = worker.process.poll()
                if code is None:
                    continue
                lived = time.monotonic() - worker.started
                if self._on_demand and code == 0:  # it had been idle: not a failure
                    log.info("LMTP worker %d exited after %.0f s, idle", worker.process.pid, lived)
                    del self._workers[slot]
                    self._shares.vacate(slot)
                    continue
                if not self._on_demand and time.monotonic() < self._restart_at:
                    continue
                self._quick_exits = self._quick_exits + 1 if lived < QUICK_EXIT_S else 0
                delay = min(MAX_RESTART_DELAY_S, 2.0**self._quick_exits - 1)
                self._restart_at = time.monotonic() + delay
                current_metrics().worker_restart()
                if self._on_demand:
                    log.warning(
                        "LMTP worker %d exited (%s) after %.0f s; another starts when "
                        "deliveries come",
                        worker.process.pid,
                        code,
                        lived,
                    )
                    del self._workers[slot]
                    self._shares.vacate(slot)
                    continue
                log.warning(
                    "LMTP worker %d exited (%s) after %.0f s; starting another",
                    worker.process.pid,
                    code,
                    lived,
                )
                self._workers[slot] = self._spawn(slot)

    async def _start_on_demand(self) -> None:
        """Start workers as deliveries need them, until cancelled by `stop`."""
        assert self._sock is not None  # noqa: S101 - only after start()
        loop = asyncio.get_running_loop()
        # A descriptor of its own: the loop keeps one reader per descriptor, and this
        # process's LMTP server waits on the listener's to accept.
        watched = self._sock.dup()
        try:
            await self._start_while_needed(loop, watched)
        finally:
            watched.close()

    async def _start_while_needed(
        self, loop: asyncio.AbstractEventLoop, watched: socket.socket
    ) -> None:
        while True:
            if self._workers:
                await asyncio.sleep(DEMAND_EVERY_S)
            else:
                # No wake-up while no mail comes: a new connection wakes this (and this
                # process's own accept, if it delivers, which takes it), then the counts
                # are read.
                await wait_readable(loop, watched)
                if self._in_main:
                    await asyncio.sleep(DEMAND_EVERY_S)
            if time.monotonic() < self._restart_at:  # failing at start: wait first
                await asyncio.sleep(self._restart_at - time.monotonic())
            slot = self._wanted_slot()
            if slot is not None:
                self._workers[slot] = self._spawn(slot)
                log.info("LMTP worker %d started (slot %d)", self._workers[slot].process.pid, slot)

    def _wanted_slot(self) -> int | None:
        """A vacant slot when deliveries need another worker: a connection waits and
        nothing delivers, or every delivering process (the running workers, and this
        one with `deliver_in_main`) holds a connection, and one holds two or a
        connection waits; a worker still starting holds none, so it is awaited."""
        assert self._sock is not None  # noqa: S101 - only after start()
        first = self._first_worker_slot
        vacant = [s for s in range(first, self._shares.slots) if s not in self._workers]
        if not vacant:
            return None
        delivering = (*range(first), *self._workers)
        if not delivering:
            return vacant[0] if _pending(self._sock) else None
        held = [self._shares.count(slot) for slot in delivering]
        if min(held) == 0 or (max(held) < 2 and not _pending(self._sock)):
            return None
        return vacant[0]

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def stop(self, grace_s: float) -> None:
        """SIGTERM every worker and stop this process's own LMTP server, wait up to
        `grace_s` for their deliveries, then SIGKILL the workers left."""
        # A cancellation of this stop itself propagates (suppressing it here hid it).
        await cancel_and_wait(self._watcher, self._demand)
        self._watcher = self._demand = None
        for worker in self._workers.values():
            if worker.process.poll() is None:
                worker.process.terminate()
        local = asyncio.create_task(self._local.stop(grace_s)) if self._local else None
        if self._sock is not None and local is None:  # else that server closes it
            self._sock.close()  # the workers' copies close as they stop accepting
            self._sock = None
        deadline = time.monotonic() + grace_s
        killed = False
        while any(w.process.poll() is None for w in self._workers.values()):
            if time.monotonic() >= deadline and not killed:
                killed = True
                for worker in self._workers.values():
                    if worker.process.poll() is None:
                        log.warning("LMTP worker %d did not stop; killing it", worker.process.pid)
                        worker.process.kill()
            await asyncio.sleep(0.05)
        if local is not None:
            await local
            self._local = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._local_shares is not None:
            self._local_shares.close()
            self._local_shares = None
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None
        if self._notify_write >= 0:
            os.close(self._notify_write)
            self._notify_write = -1
        if self._metrics_reader is not None:
            self._metrics_reader.close()
            self._metrics_reader = None
        if self._metrics_write >= 0:
            os.close(self._metrics_write)
            self._metrics_write = -1
        for dormant in self._dormant:
            dormant.dismiss()
        self._dormant.clear()
        self._closed.set()


def _pending(sock: socket.socket) -> bool:
    """Whether a connection waits to be accepted on the listening socket (not taken)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)
