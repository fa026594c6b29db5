"""Change notifications: delivery tells IDLE sessions of the same user.

Within a process a ChangeBus hands changes to the sessions' queues. `serve`'s LMTP
worker processes publish through a pipe (`PipePublisher`) that the main process reads
into its bus (`ChangeForwarder`), so IDLE hears of their deliveries at once too.
Changes made by other processes (the CLI, another node of a scale-out setup) reach the
bus through the change log (db/_changes.py): `serve`'s change feed (serve/_events.py)
hears of them by PostgreSQL NOTIFY or by polling the log, and publishes them here.

Nothing is lost for good when a subscriber or the pipe falls behind, and memory stays
bounded: a full queue keeps one "resync" flag and hands its session RESCAN (mailbox id
0: re-read everything, by modseq) at the next drain; a full pipe keeps one flag and
writes a wake-all record as soon as the pipe has room again.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections import defaultdict
from typing import Final, Protocol, TypeVar, overload

from cryptmail.db import UserId
from cryptmail.store._ids import MailboxId

_RECORD = struct.Struct("!QQ")
"""One change on the pipe: user id, mailbox id. 16 bytes, far below PIPE_BUF, so the
kernel never interleaves two writers' records."""

RESCAN: Final = MailboxId(0)
"""A wake-up that names no mailbox: changes may have been missed, re-read them all."""

_WAKE_ALL: Final = _RECORD.pack(0, RESCAN)
"""On the pipe (user id 0 is nobody's): wake every subscriber to rescan."""

QUEUE_SIZE: Final = 64
"""Changes a subscriber's queue holds before it coalesces the rest into one RESCAN."""


class ChangeQueue(asyncio.Queue[MailboxId]):
    """A subscriber's queue of changed mailbox ids that never refuses one: when full it
    sets its resync flag instead, and `drain` then ends with RESCAN."""

    def __init__(self, maxsize: int = QUEUE_SIZE) -> None:
        super().__init__(maxsize)
        self.resync = False

    def put_nowait(self, item: MailboxId) -> None:
        if self.full():
            self.resync = True  # the session is awake already: it drains soon
            return
        super().put_nowait(item)

    def drain(self) -> list[MailboxId]:
        """What is queued now, and RESCAN (once) if changes were coalesced."""
        taken = []
        while not self.empty():
            taken.append(self.get_nowait())
        if self.resync:
            self.resync = False
            taken.append(RESCAN)
        return taken


Q = TypeVar("Q", bound=asyncio.Queue[MailboxId])


class ChangePublisher(Protocol):
    """Where the store reports that a user's mailbox changed."""

    def publish(self, user_id: UserId, mailbox_id: MailboxId) -> None: ...


class ChangeBus:
    def __init__(self) -> None:
        self._queues: dict[UserId, set[asyncio.Queue[MailboxId]]] = defaultdict(set)

    @overload
    def subscribe(self, user_id: UserId) -> ChangeQueue: ...

    @overload
    def subscribe(self, user_id: UserId, queue: Q) -> Q: ...

    def subscribe(
        self, user_id: UserId, queue: asyncio.Queue[MailboxId] | None = None
    ) -> asyncio.Queue[MailboxId]:
        """A queue of the user's changed mailbox ids (or `queue`, a subscriber's own:
        IMAP NOTIFY's coalescing sink); see ChangeQueue for what a full one does."""
        if queue is None:
            queue = ChangeQueue()
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
            except asyncio.QueueFull:  # a plain queue of a subscriber's own: it is awake
                pass

    def wake_all(self) -> None:
        """Wake every subscriber (with RESCAN) to rescan: changes may have been missed
        (the change feed was cut off longer than the log keeps them, a pipe was full)."""
        for user_id in list(self._queues):
            self.publish(user_id, RESCAN)


class PipePublisher:
    """Publishes into another process's ChangeBus through the write end of a pipe.

    It never blocks a delivery: when the pipe is full (the reader is far behind) the
    change is not written but owed: one wake-all record goes as soon as the pipe has
    room (on the running loop; else with the next publish). When it is closed (the
    reader is gone) there is nobody to tell.
    """

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._owed = False
        self._waiting: asyncio.AbstractEventLoop | None = None

    def publish(self, user_id: UserId, mailbox_id: MailboxId) -> None:
        if self._owed:
            self._pay()
        if not self._owed:
            self._write(_RECORD.pack(user_id, mailbox_id))

    def _write(self, record: bytes) -> None:
        try:
            os.write(self._fd, record)
        except BlockingIOError:
            self._owe()
        except BrokenPipeError:
            pass

    def _owe(self) -> None:
        self._owed = True
        if self._waiting is not None:
            return
        try:
            self._waiting = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next publish pays
        self._waiting.add_writer(self._fd, self._pay)

    def _pay(self) -> None:
        if self._waiting is not None:
            self._waiting.remove_writer(self._fd)
            self._waiting = None
        self._owed = False
        self._write(_WAKE_ALL)  # owes again (and waits again) if still full

    def close(self) -> None:
        """Stop waiting for room (the worker stops); what is owed is not sent."""
        if self._waiting is not None:
            self._waiting.remove_writer(self._fd)
            self._waiting = None


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
            if user_id == 0:  # a publisher's pipe was full: it owed this
                self._bus.wake_all()
            else:
                self._bus.publish(UserId(user_id), MailboxId(mailbox_id))

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
