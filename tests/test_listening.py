"""The accept loop the protocols share: caps in all and per address over two listeners
that share counts, a session's failure kept to its connection, a stop that ends every
session and runs the listener's clean-up once."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cryptmail.listening import ConnectionCounts, ConnectionLimits, Refusal, SessionListener


class Echo(SessionListener):
    """Greets, then echoes lines; "boom" raises inside the session."""

    def __init__(self, counts: ConnectionCounts, limits: ConnectionLimits) -> None:
        super().__init__("ECHO", "127.0.0.1", 0, counts)
        self._limits = limits
        self.closed = 0

    def limits(self) -> ConnectionLimits:
        return self._limits

    def refusal(self, why: Refusal) -> bytes:
        return f"NO {why}\r\n".encode()

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str
    ) -> None:
        writer.write(f"HELLO {ip}\r\n".encode())
        await writer.drain()
        while line := await reader.readline():
            if line.strip() == b"boom":
                raise RuntimeError("a bug in one session")
            writer.write(line)
            await writer.drain()

    async def closing(self) -> None:
        self.closed += 1


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return reader, writer, await reader.readline()


async def _close(*writers: asyncio.StreamWriter) -> None:
    """The client's side closed too: a connection the server ended still has ours."""
    for writer in writers:
        writer.close()
        await writer.wait_closed()


def test_counts_add_and_remove_per_address() -> None:
    counts = ConnectionCounts()
    counts.add("10.0.0.1")
    counts.add("10.0.0.1")
    counts.add("10.0.0.2")
    counts.remove("10.0.0.1")
    counts.remove("10.0.0.2")
    assert (counts.total, counts.per_ip) == (1, {"10.0.0.1": 1})


async def test_caps_hold_over_two_listeners_sharing_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cryptmail")
    counts = ConnectionCounts()
    limits = ConnectionLimits("echo", max_connections=3, max_connections_per_ip=2)
    plain, other = Echo(counts, limits), Echo(counts, limits)
    await plain.start()
    await other.start()
    try:
        first = await _connect(plain.port)
        second = await _connect(other.port)
        assert first[2] == second[2] == b"HELLO 127.0.0.1\r\n"
        third = await _connect(plain.port)
        assert third[2] == b"NO address\r\n"
        assert await third[0].read() == b""  # closed after the refusal
        await _close(third[1])
        assert "echo.max_connections_per_ip reached" in caplog.text
        # One connection ends: its slot is free again, on either listener.
        first[1].close()
        await first[1].wait_closed()
        for _ in range(100):
            if counts.total == 1:
                break
            await asyncio.sleep(0.01)
        again = await _connect(other.port)
        assert again[2] == b"HELLO 127.0.0.1\r\n"
        await _close(second[1], again[1])
    finally:
        await plain.stop(1)
        await other.stop(1)


async def test_the_total_cap_refuses_with_its_own_line() -> None:
    limits = ConnectionLimits("echo", max_connections=1, max_connections_per_ip=10)
    listener = Echo(ConnectionCounts(), limits)
    await listener.start()
    try:
        _, writer, greeting = await _connect(listener.port)
        assert greeting.startswith(b"HELLO")
        _, refused, refusal = await _connect(listener.port)
        assert refusal == b"NO server\r\n"
        await _close(writer, refused)
    finally:
        await listener.stop(1)


async def test_a_failing_session_ends_alone_and_stop_ends_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cryptmail")
    counts = ConnectionCounts()
    listener = Echo(counts, ConnectionLimits("echo", 10, 10))
    await listener.start()
    broken_reader, broken, _ = await _connect(listener.port)
    calm_reader, calm, _ = await _connect(listener.port)
    broken.write(b"boom\r\n")
    assert await broken_reader.read() == b""
    assert "ECHO connection from a client failed" in caplog.text
    calm.write(b"still here\r\n")
    assert await calm_reader.readline() == b"still here\r\n"

    await listener.stop(1)
    await asyncio.wait_for(listener.wait_closed(), 5)
    assert await calm_reader.read() == b""  # the session was ended by the stop
    assert (counts.total, counts.per_ip, listener.closed) == (0, {}, 1)
    await _close(broken, calm)


class Stubborn(Echo):
    """A session that swallows the first cancellation (as IDLE once did) or, with
    `blocked`, waits on something no cancel reaches until its connection is cut."""

    def __init__(self, counts: ConnectionCounts, *, blocked: bool = False) -> None:
        super().__init__(counts, ConnectionLimits("echo", 10, 10))
        self.blocked = blocked

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str
    ) -> None:
        writer.write(b"HELLO\r\n")
        await writer.drain()
        try:
            await reader.read()
        except asyncio.CancelledError:
            pass  # swallowed: the session reads on
        while not self.blocked and await reader.read(1):
            pass
        if self.blocked:  # deaf to cancels, ends only when the connection is gone
            while True:
                try:
                    if not await reader.read(1):
                        return
                except asyncio.CancelledError:
                    continue


@pytest.mark.parametrize("blocked", [False, True])
async def test_a_session_that_ignores_the_stop_has_its_connection_cut_and_ends(
    blocked: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Past the grace the stop aborts what is left and cancels it again; when it
    returns no session runs (the caller may dispose the engine and close the loop)."""
    counts = ConnectionCounts()
    listener = Stubborn(counts, blocked=blocked)
    await listener.start()
    clients = [await _connect(listener.port) for _ in range(3)]
    await listener.stop(0.2)
    assert (counts.total, counts.per_ip) == (0, {})
    here = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not here] == []
    for reader, writer, _ in clients:
        assert await reader.read() == b""
        await _close(writer)
    assert "did not end" not in caplog.text
