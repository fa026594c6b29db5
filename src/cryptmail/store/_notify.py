"""Change notifications: delivery tells IDLE sessions of the same user.

Within a process a ChangeBus hands changes to the sessions' queues. `serve`'s LMTP
worker processes publish through a pipe (`PipePublisher`) that the main process reads
into its bus (`ChangeForwarder`), so IDLE hears of their deliveries at once too.
Changes made by other processes (the CLI, another node of a scale-out setup) reach the
bus through the change log (db/_changes.py): `serve`'s change feed (serve/_events.py)
hears of them by PostgreSQL NOTIFY or by polling the log, and publishes them here.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections import defaultdict
from typing import Protocol

from cryptmail.db import UserId
from cryptmail.store._ids import MailboxId

_RECORD = struct.Struct("!QQ")
"""One change on the pipe: user id, mailbox id. 16 bytes, far below PIPE_BUF, so the
kernel never interleaves two writers' records."""


class ChangePublisher(Protocol):
    """Where the store reports that a user's mailbox changed."""

    def publish(self, user_id: UserId, mailbox_id: MailboxId) -> None: ...


class ChangeBus:
    def __init__(self) -> None:
        self._queues: dict[UserId, set[asyncio.Queue[MailboxId]]] = defaultdict(set)

    def subscribe(
        self, user_id: UserId, queue: asyncio.Queue[MailboxId] | None = None
    ) -> asyncio.Queue[MailboxId]:
        """A queue of the user's changed mailbox ids (or `queue`, a subscriber's own:
        IMAP NOTIFY's coalescing sink)."""
        if queue is None:
            queue = asyncio.Queue(maxsize=64)
        self._queues[user_id].add(queue)
        return queue

    def unsubscribe(self, user_id: UserId, queue: asyncio.Queue[MailboxId]) -> None:
        queues = self._queues.get(user_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[user_id]

    def publish(self, user_id: UserId, mailbox_id: MailboxId) -> None:
        for queue in list(self._queues.get(user_id, ())):
            try:
                queue.put_nowait(mailbox_id)
            except asyncio.QueueFull:
                pass  # the session is far behind; it rescans on its next wake-up anyway

    def wake_all(self) -> None:
        """Wake every subscriber (with mailbox id 0) to rescan: changes may have been
        missed (the change feed was cut off longer than the log keeps them)."""
        for user_id in list(self._queues):
            self.publish(user_id, MailboxId(0))


class PipePublisher:
    """Publishes into another process's ChangeBus through the write end of a pipe.

    It never blocks a delivery: when the pipe is full (the reader is far behind) or
    closed (the reader is gone), the change is dropped and IDLE's poll finds it.
    """

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd

    def publish(self, user_id: UserId, mailbox_id: MailboxId) -> None:
        try:
            os.write(self._fd, _RECORD.pack(user_id, mailbox_id))
        except (BlockingIOError, BrokenPipeError):
            pass


class ChangeForwarder:
    """Reads a pipe's changes (from PipePublishers) into `bus` on the running loop,
    from construction until `close()`."""

    def __init__(self, fd: int, bus: ChangeBus) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._bus = bus
        self._pending = b""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 64 * _RECORD.size)
        except BlockingIOError:
            return
        if not data:  # every writer closed its end
            self.close()
            return
        data = self._pending + data
        whole = len(data) - len(data) % _RECORD.size
        self._pending = data[whole:]
        for user_id, mailbox_id in _RECORD.iter_unpack(data[:whole]):
            self._bus.publish(UserId(user_id), MailboxId(mailbox_id))

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
