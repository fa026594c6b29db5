"""LmtpServer's listeners: several servers (processes) on one socket share the
connections evenly, a fuller one still answers when the emptier cannot, and stop()
stops accepting."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import cast

import pytest

from cryptmail.delivery import ConnectionShares, Handler, LmtpServer
from cryptmail.sockets import bind_listener

NOBODY = cast(Handler, object())  # connections here never get past the greeting


async def _greeted(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"220 ")
    return reader, writer


@pytest.fixture
async def listener() -> AsyncIterator[socket.socket]:
    sock = bind_listener("127.0.0.1:0")
    yield sock
    sock.close()


async def test_connections_opened_together_are_shared_evenly(listener: socket.socket) -> None:
    counts = ConnectionShares.create(2)
    first, second = ConnectionShares(counts.fd, 2, 0), ConnectionShares(counts.fd, 2, 1)
    servers = [
        LmtpServer(NOBODY, hostname="a.test", shares=first),
        LmtpServer(NOBODY, hostname="b.test", shares=second),
    ]
    # Each server stands for a process with its own descriptor of the one socket.
    for server in servers:
        await server.serve_socket(listener.dup())
    port = listener.getsockname()[1]
    try:
        opened = await asyncio.gather(*(_greeted(port) for _ in range(8)))
        assert [first.count(0), first.count(1)] == [4, 4]
        for _reader, writer in opened:
            writer.close()
    finally:
        for server in servers:
            await server.stop(grace_s=5)
    assert [first.count(0), first.count(1)] == [0, 0]


async def test_a_fuller_server_answers_when_the_emptier_one_does_not(
    listener: socket.socket,
) -> None:
    counts = ConnectionShares.create(2)
    shares = ConnectionShares(counts.fd, 2, 0)
    stuck = ConnectionShares(counts.fd, 2, 1)  # a process that holds none but is stopped
    server = LmtpServer(NOBODY, hostname="a.test", shares=shares)
    await server.serve_socket(listener.dup())
    port = listener.getsockname()[1]
    try:
        opened = [await _greeted(port) for _ in range(3)]
        assert shares.count(0) == 3 and stuck.count(1) == 0
        for _reader, writer in opened:
            writer.close()
    finally:
        await server.stop(grace_s=5)


async def test_a_deferring_server_answers_once_it_holds_the_fewest(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that deferred to an emptier one takes the connection as soon as that
    one holds as many (it took another), not only when the deferral ends."""
    monkeypatch.setattr("cryptmail.delivery._server.ACCEPT_DEFER_S", 600.0)
    counts = ConnectionShares.create(2)
    shares = ConnectionShares(counts.fd, 2, 0)
    other = ConnectionShares(counts.fd, 2, 1)  # stands for a process busy elsewhere
    shares.opened()  # this server holds one already, the other none
    server = LmtpServer(NOBODY, hostname="a.test", shares=shares)
    await server.serve_socket(listener.dup())
    port = listener.getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        waiting = asyncio.ensure_future(reader.readline())
        await asyncio.sleep(0.1)
        assert not waiting.done()  # deferred: the other holds fewer
        other.opened()  # the other took a connection: now they hold as many
        assert (await asyncio.wait_for(waiting, 10)).startswith(b"220 ")
        assert shares.count(0) == 2
    finally:
        writer.close()
        await server.stop(grace_s=5)


async def test_stop_closes_the_listener(listener: socket.socket) -> None:
    server = LmtpServer(NOBODY, hostname="a.test")
    own = listener.dup()
    await server.serve_socket(own)
    port = listener.getsockname()[1]
    _reader, writer = await _greeted(port)
    writer.close()
    await server.stop(grace_s=5)
    assert own.fileno() == -1
    listener.close()
    with pytest.raises(OSError):
        await _greeted(port)
