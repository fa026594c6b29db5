"""Change notifications: the in-process bus, and the pipe from LMTP worker processes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from cryptmail.store import (
    RESCAN,
    ChangeBus,
    ChangeForwarder,
    MailboxId,
    PipePublisher,
    UserId,
)

Pipe = tuple[int, int]


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    os.close(read_end)
    os.close(write_end)


async def test_the_bus_tells_only_the_users_own_sessions() -> None:
    bus = ChangeBus()
    mine, theirs = bus.subscribe(UserId(1)), bus.subscribe(UserId(2))
    bus.publish(UserId(1), MailboxId(10))
    assert mine.get_nowait() == 10
    assert theirs.empty()
    bus.unsubscribe(UserId(1), mine)
    bus.publish(UserId(1), MailboxId(11))
    assert mine.empty()


async def test_changes_published_into_a_pipe_reach_the_bus_of_the_reading_process(
    pipe: Pipe,
) -> None:
    read_end, write_end = pipe
    bus = ChangeBus()
    queue = bus.subscribe(UserId(7))
    forwarder = ChangeForwarder(read_end, bus)
    try:
        publisher = PipePublisher(write_end)
        publisher.publish(UserId(7), MailboxId(3))
        publisher.publish(UserId(8), MailboxId(4))  # another user: nobody of theirs listens here
        publisher.publish(UserId(7), MailboxId(2**40))
        assert await asyncio.wait_for(queue.get(), 5) == 3
        assert await asyncio.wait_for(queue.get(), 5) == 2**40
    finally:
        forwarder.close()


async def test_a_full_pipe_drops_changes_instead_of_blocking_the_delivery(pipe: Pipe) -> None:
    read_end, write_end = pipe
    publisher = PipePublisher(write_end)
    for mailbox in range(10_000):  # 160 KB: more than a pipe holds
        publisher.publish(UserId(1), MailboxId(mailbox))
    assert len(os.read(read_end, 1 << 20)) % 16 == 0


async def test_a_pipe_whose_reader_is_gone_is_not_an_error() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        PipePublisher(write_end).publish(UserId(1), MailboxId(1))
    finally:
        os.close(write_end)


async def test_a_record_split_across_reads_is_put_back_together(pipe: Pipe) -> None:
    read_end, write_end = pipe
    bus = ChangeBus()
    queue = bus.subscribe(UserId(5))
    forwarder = ChangeForwarder(read_end, bus)
    try:
        record = (5).to_bytes(8, "big") + (9).to_bytes(8, "big")
        os.write(write_end, record[:5])
        await asyncio.sleep(0.05)
        assert queue.empty()
        os.write(write_end, record[5:])
        assert await asyncio.wait_for(queue.get(), 5) == 9
    finally:
        forwarder.close()


async def test_a_full_queue_coalesces_what_it_cannot_hold_into_one_rescan() -> None:
    """A session far behind (a slow client, a long command) misses no change: what its
    queue cannot hold becomes one flag, and its next drain ends with RESCAN, however
    many changes were coalesced (memory stays bounded)."""
    bus = ChangeBus()
    queue = bus.subscribe(UserId(1))
    for mailbox in range(1, 10_001):
        bus.publish(UserId(1), MailboxId(mailbox))
    assert queue.qsize() == queue.maxsize
    heard = [await queue.get()] + queue.drain()
    assert heard == [*range(1, queue.maxsize + 1), RESCAN]
    assert queue.drain() == []  # the flag went with the drain
    bus.publish(UserId(1), MailboxId(5))
    assert queue.drain() == [5]


async def test_a_queue_with_room_hears_each_change_and_no_rescan() -> None:
    bus = ChangeBus()
    queue = bus.subscribe(UserId(1))
    for mailbox in (3, 4, 3):
        bus.publish(UserId(1), MailboxId(mailbox))
    assert queue.drain() == [3, 4, 3]


async def test_a_pipe_that_was_full_wakes_every_subscriber_once_it_has_room(pipe: Pipe) -> None:
    """The LMTP workers' changes a full pipe could not take are owed, not dropped: the
    publisher writes one wake-all record as soon as the reader made room, and every
    IDLE session of the main process rescans (even of users no record names)."""
    read_end, write_end = pipe
    publisher = PipePublisher(write_end)
    for mailbox in range(1, 10_001):  # 160 KB: more than a pipe holds
        publisher.publish(UserId(1), MailboxId(mailbox))
    bus = ChangeBus()
    other = bus.subscribe(UserId(2))  # no record on the pipe names this user
    forwarder = ChangeForwarder(read_end, bus)
    try:
        assert await asyncio.wait_for(other.get(), 10) == RESCAN
    finally:
        forwarder.close()
        publisher.close()
