"""Events from LMTP worker processes to the main process's registry, over a pipe.

A worker's sink (`PipeMetrics`) keeps its events for up to `FLUSH_S`, then writes them
in one go, each as a short JSON line: the main process then wakes, reads
and replays once per batch, not twice per delivery (its CPU per delivery is what caps
the delivery rate on a small machine). Each write is at most PIPE_BUF bytes and ends at a
line end; such a write is atomic, so the workers can share one pipe. The main process
reads it on its loop (`MetricsReader`) and replays each line on its own sink. Only the
event names of `MetricsSink` are replayed, with their arguments checked, so a garbled
line is dropped, not executed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import threading
from typing import Any

from cryptmail.metrics._sink import MetricsSink

log = logging.getLogger(__name__)

# Event name -> the types of its arguments.
_EVENTS: dict[str, tuple[type, ...]] = {
    "delivered": (str, float),
    "imap_connection": (),
    "imap_command": (str, float),
    "login": (str, str),
    "argon2_wait": (float,),
    "key_cache": (bool,),
    "blob_operation": (str, str, float),
    "worker_restart": (),
}
_MAX_LINE = 512
# One write of at most PIPE_BUF bytes is atomic: the lines of two workers never mix.
_MAX_WRITE = min(select.PIPE_BUF, 4096)
FLUSH_S = 0.05
"""How long a worker keeps an event before it writes it (with those that came meanwhile)."""
_MAX_KEPT = 256
"""Events kept before a write even within FLUSH_S (a burst): bounds the memory and the
work of one write."""


class PipeMetrics:
    """A worker's sink: its events go to the main process through `fd`, in batches.

    An event is written at most `flush_s` later, on the running loop, or at once when no
    loop runs in the calling thread (a pool thread, or the worker after its loop ended).
    Call `flush` when the worker stops, so its last events are not lost.
    """

    def __init__(self, fd: int, flush_s: float = FLUSH_S) -> None:
        self._fd = fd
        self._flush_s = flush_s
        self._events: list[tuple[Any, ...]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        # Events may come from pool threads too, while the loop's timer flushes.
        self._lock = threading.Lock()
        # A main process that stops reading (stopped, busy) must not stall deliveries:
        # with the pipe full a batch is dropped, as a change notification is.
        os.set_blocking(fd, False)

    def _send(self, name: str, *args: Any) -> None:
        # Kept as it came and turned into JSON at the write, all together: one event's
        # `json.dumps` on a delivery's path cost far more than in a run of them.
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._events.append((name, *args))
            if loop is None or len(self._events) >= _MAX_KEPT:
                self._write()  # no loop here to flush it later, or a burst
            elif self._timer_loop is not loop:  # none armed (or one on a loop now gone)
                self._timer_loop = loop
                self._timer = loop.call_later(self._flush_s, self._on_timer)

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = self._timer_loop = None
            self._write()

    def flush(self) -> None:
        """Write the events kept so far now: on the loop's thread, or once it has ended
        (the worker's last events)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._timer_loop = None
            self._write()

    def _write(self) -> None:
        """Write the kept events as lines, in writes of at most _MAX_WRITE bytes that end
        at a line end; with the lock."""
        if not self._events:
            return
        events, self._events = self._events, []
        lines: list[bytes] = []
        size = 0
        for event in events:
            line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
            if len(line) > _MAX_LINE:
                continue  # the reader would drop it; cut short, it would garble the next
            if size + len(line) > _MAX_WRITE:
                self._put(b"".join(lines))
                lines.clear()
                size = 0
            lines.append(line)
            size += len(line)
        if lines:
            self._put(b"".join(lines))

    def _put(self, data: bytes) -> None:
        # A metric must never fail or stall a delivery: a full pipe or a closed one (main
        # process gone) drops the batch.
        with contextlib.suppress(OSError):
            os.write(self._fd, data)

    def delivered(self, result: str, seconds: float) -> None:
        self._send("delivered", result, seconds)

    def imap_connection(self) -> None:
        self._send("imap_connection")

    def imap_command(self, name: str, seconds: float) -> None:
        self._send("imap_command", name, seconds)

    def login(self, protocol: str, result: str) -> None:
        self._send("login", protocol, result)

    def argon2_wait(self, seconds: float) -> None:
        self._send("argon2_wait", seconds)

    def key_cache(self, hit: bool) -> None:
        self._send("key_cache", hit)

    def blob_operation(self, operation: str, result: str, seconds: float) -> None:
        self._send("blob_operation", operation, result, seconds)

    def worker_restart(self) -> None:
        self._send("worker_restart")


# json.loads less its work per call (sniffing the bytes' encoding, finding the default
# decoder): the main process replays every event of every worker.
_decode = json.JSONDecoder().decode


def replay(line: bytes, sink: MetricsSink) -> bool:
    """Apply one forwarded event to `sink`; False (and nothing applied) if it is not one."""
    try:
        name, *args = _decode(line.decode())
    except (ValueError, TypeError):  # UnicodeDecodeError is a ValueError
        return False
    types = _EVENTS.get(name) if isinstance(name, str) else None
    if types is None or len(args) != len(types):
        return False
    # JSON yields exact types (a bool is not an int here), so `type(...) is` checks
    # what isinstance would, for less.
    for i, kind in enumerate(types):
        value = args[i]
        if kind is float and type(value) is int:  # a float the worker wrote as 1, not 1.0
            args[i] = float(value)
        elif type(value) is not kind:
            return False
    getattr(sink, name)(*args)
    return True


class MetricsReader:
    """The main process's end of the pipe: replays every line on `sink`."""

    def __init__(self, fd: int, sink: MetricsSink) -> None:
        self._fd = fd
        self._sink = sink
        self._pending = b""
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        if not data:  # every writer closed
            asyncio.get_running_loop().remove_reader(self._fd)
            return
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            if not replay(line, self._sink):
                log.warning("metrics: dropped a malformed event from a worker")
        if len(self._pending) > _MAX_LINE:
            self._pending = b""

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)
