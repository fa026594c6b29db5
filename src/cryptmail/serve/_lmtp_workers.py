"""LMTP in worker processes: the main process binds the listener, starts the workers
and starts one again when it dies.

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
change bus (`PipePublisher`, `ChangeForwarder`), its metric events through another to
the main process's registry (`PipeMetrics`, `MetricsReader`), so `/metrics` shows the
deliveries of every worker; the SQLite writers of all processes
queue on one `flock` (`db.run_transaction`). What a worker runs is `_lmtp_worker`: forked
by `serve` at its start (`_prefork`: the workers share the interpreter's pages with this
process), or, for a worker that replaces one that died, a new interpreter started
through `_worker_process`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Protocol

from cryptmail.concurrency import run_blocking
from cryptmail.delivery import ConnectionShares
from cryptmail.metrics import MetricsReader
from cryptmail.metrics import current as current_metrics
from cryptmail.serve._lmtp_worker import WorkerFds, WorkerSetup
from cryptmail.serve._prefork import DormantWorker
from cryptmail.sockets import bind_listener, socket_group_id
from cryptmail.store import ChangeBus, ChangeForwarder

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
    ):
        self._setup = setup
        self._dormant = list(dormant or [])
        self._address = address
        self._shares = ConnectionShares.create(processes)
        self._bus = bus
        self._sock: socket.socket | None = None
        self._workers: list[_Worker] = []
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
        return [worker.process.pid for worker in self._workers]

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
        self._workers = [self._spawn(slot) for slot in range(self._shares.slots)]
        self._watcher = asyncio.create_task(self._watch())
        log.info(
            "LMTP listening on %s (%d worker processes: %s)",
            self._address,
            self._shares.slots,
            ", ".join(map(str, self.pids)),
        )

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
        """Start a worker again when one exits, until cancelled by `stop`."""
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
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
                current_metrics().worker_restart()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def stop(self, grace_s: float) -> None:
        """SIGTERM every worker, wait up to `grace_s` for their deliveries, then SIGKILL."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        for worker in self._workers:
            if worker.process.poll() is None:
                worker.process.terminate()
        if self._sock is not None:
            self._sock.close()  # the workers' copies close as they stop accepting
            self._sock = None
        deadline = time.monotonic() + grace_s
        killed = False
        while any(w.process.poll() is None for w in self._workers):
            if time.monotonic() >= deadline and not killed:
                killed = True
                for worker in self._workers:
                    if worker.process.poll() is None:
                        log.warning("LMTP worker %d did not stop; killing it", worker.process.pid)
                        worker.process.kill()
            await asyncio.sleep(0.05)
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
