"""How many connections each LMTP process of one `serve` holds, in shared memory, so
that a new connection goes to the process holding the fewest.

Every process waits on the one listening socket, the kernel wakes them all for a new
connection, and whoever calls accept() first gets it. A connection stays with its
process for its whole life (Postfix keeps LMTP connections open for many messages),
and asyncio's own accept takes every pending connection at once: eight connections
opened together often went seven to one process and one to the other, which then
idled. So each process counts its open connections in its slot of a shared memory
file, and a process that holds more than some other defers its accept for a moment,
leaving the connection to the emptier one. If it is still pending after that (the
other is busy or stopped), the fuller process takes it: a connection never waits on a
process that cannot answer.

A slot whose process is not running (LMTP workers started on demand) is marked absent
(`vacate`): it reads as holding more than any process could, so nobody defers to it.
"""

from __future__ import annotations

import mmap
import os
import struct

_COUNT = struct.Struct("=I")
_ABSENT = 0xFFFFFFFF


class ConnectionShares:
    """The connection counts of `slots` processes; this process owns slot `slot`, or
    none (the main process, which only makes the file and resets a dead worker's slot).

    Each slot has one writer, its process; others only read it, and a count read a
    moment late only makes one accept less evenly placed.
    """

    def __init__(self, fd: int, slots: int, slot: int | None, *, yields: bool = False) -> None:
        """`yields`: this process defers on a tie too, leaving a connection to another
        that holds as many (the main process, whose deliveries share its loop with IMAP
        and hand their blocking calls to threads, for the workers)."""
        if slot is not None and not 0 <= slot < slots:
            raise ValueError(f"slot {slot} is not one of {slots}")
        self.fd = fd
        self.slots = slots
        self._slot = slot
        self._yields = yields
        self._map = mmap.mmap(fd, slots * _COUNT.size)

    @classmethod
    def create(cls, slots: int) -> ConnectionShares:
        """New counts, all zero, in an anonymous memory file; the creator owns no slot.
        Pass `fd` to the other processes (it is closed on exec unless passed)."""
        fd = os.memfd_create("cryptmail-lmtp-shares", os.MFD_CLOEXEC)
        os.ftruncate(fd, slots * _COUNT.size)
        return cls(fd, slots, None)

    def _own(self) -> int:
        if self._slot is None:
            raise ValueError("these connection shares own no slot")
        return self._slot

    def count(self, slot: int) -> int:
        return int(_COUNT.unpack_from(self._map, slot * _COUNT.size)[0])

    def _set(self, slot: int, value: int) -> None:
        _COUNT.pack_into(self._map, slot * _COUNT.size, value)

    def opened(self) -> None:
        slot = self._own()
        self._set(slot, self.count(slot) + 1)

    def closed(self) -> None:
        slot = self._own()
        self._set(slot, max(0, self.count(slot) - 1))

    def reset(self, slot: int) -> None:
        """Zero the slot of a process that died (its connections died with it) or that
        is about to start."""
        self._set(slot, 0)

    def vacate(self, slot: int) -> None:
        """Mark the slot of a process that is not running: no other process defers to it."""
        self._set(slot, _ABSENT)

    def present(self, slot: int) -> bool:
        return self.count(slot) != _ABSENT

    def held(self) -> int:
        """The connections this process holds now."""
        return self.count(self._own())

    def holds_fewest(self) -> bool:
        """Whether no other process holds fewer connections than this one (nor as many,
        for a process that yields)."""
        own = self._own()
        mine = self.count(own)
        if self._yields:
            return all(self.count(slot) > mine for slot in range(self.slots) if slot != own)
        return all(self.count(slot) >= mine for slot in range(self.slots))

    def close(self) -> None:
        self._map.close()
