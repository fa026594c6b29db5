"""Events from LMTP worker processes to the main process's registry, over a pipe.

A worker's sink (`PipeMetrics`) writes each event as one short JSON line; one write of
less than PIPE_BUF bytes is atomic, so the workers can share one pipe. The main process
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


class PipeMetrics:
    """A worker's sink: every event goes to the main process through `fd`."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        # A main process that stops reading (stopped, busy) must not stall deliveries:
        # with the pipe full an event is dropped, as a change notification is.
        os.set_blocking(fd, False)

    def _send(self, name: str, *args: Any) -> None:
        line = json.dumps([name, *args], separators=(",", ":")).encode() + b"\n"
        # A metric must never fail a delivery: a full pipe or a closed one (main process
        # gone) drops the event.
        with contextlib.suppress(OSError):
            os.write(self._fd, line[:_MAX_LINE])

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


def replay(line: bytes, sink: MetricsSink) -> bool:
    """Apply one forwarded event to `sink`; False (and nothing applied) if it is not one."""
    try:
        name, *args = json.loads(line)
    except (ValueError, TypeError):
        return False
    types = _EVENTS.get(name) if isinstance(name, str) else None
    if types is None or len(args) != len(types):
        return False
    checked: list[Any] = []
    for value, kind in zip(args, types, strict=True):
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, kind):
            return False
        checked.append(value)
    getattr(sink, name)(*checked)
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
