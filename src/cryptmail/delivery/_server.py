"""The LMTP listener: TCP or a Unix socket, a connection cap and a graceful stop.

`LmtpServer` has the listener shape `serve` runs (start, wait_closed, stop with a grace
period). `stop()` closes the listeners first, tells idle connections to go (421), lets every
delivery in flight finish and send its replies, and only then cancels what is left.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence

from cryptmail.delivery._protocol import READ_LIMIT, Handler, Limits, LmtpConnection
from cryptmail.delivery._shares import ConnectionShares
from cryptmail.sockets import bind_listener, wait_readable

log = logging.getLogger(__name__)

ACCEPT_DEFER_S = 0.02
"""How long at most a process holding more connections than another leaves a new one to
it. Long enough for the emptier one to finish the delivery it is blocked in (a few ms
for a small message): at 2 ms eight connections opened together went 3/2/2/1 to four
workers, and the one with three was the bottleneck while the others idled."""
DEFER_STEP_S = 0.002
"""How often a deferring process reads the counts again: it takes the connection as
soon as it holds the fewest. Sleeping the whole deferral left the last of eight
connections opened together waiting 20 ms while every process held as many (each had
deferred when another had not yet taken its first): greetings took 15 ms at the 75th
percentile, and a round of 40 messages of 206 KB a fifth longer."""


class LmtpServer:
    """Serves LMTP with one handler on any number of listeners.

    With `shares`, it is one of several processes on the same listeners and takes a new
    connection only when it holds the fewest (see `ConnectionShares`).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        hostname: str = "",
        limits: Limits | None = None,
        max_connections: int = 64,
        shares: ConnectionShares | None = None,
        sockets: Sequence[socket.socket] = (),
    ) -> None:
        """`sockets`: listening sockets (from `bind_listener`) that `start` serves."""
        self._handler = handler
        self._sockets = list(sockets)
        self._closed = asyncio.Event()
        self._hostname = hostname or socket.getfqdn()
        self._limits = limits or Limits()
        self._max_connections = max_connections
        self._shares = shares
        self._listeners: dict[socket.socket, asyncio.Task[None]] = {}
        self._connections: dict[asyncio.Task[None], LmtpConnection] = {}
        self._starting: set[asyncio.Task[None]] = set()
        """Connection tasks (the loop keeps only weak references to tasks)."""

    @property
    def name(self) -> str:
        return "LMTP"

    async def start(self) -> None:
        """Accept connections on the sockets given at construction."""
        for sock in self._sockets:
            await self.serve_socket(sock)

    async def wait_closed(self) -> None:
        """Return once `stop` has finished."""
        await self._closed.wait()

    @property
    def ports(self) -> list[int]:
        """The TCP ports listened on (useful with port 0)."""
        found = []
        for sock in self._listeners:
            name = sock.getsockname()
            if isinstance(name, tuple):
                found.append(int(name[1]))
        return found

    async def listen(self, address: str, *, group: int | None = None) -> None:
        """Start listening on `address`. Raises ConfigError, OSError."""
        await self.serve_socket(bind_listener(address, group=group))
        log.info("LMTP listening on %s", address)

    async def serve_socket(self, sock: socket.socket) -> None:
        """Accept connections on a listening socket (from `bind_listener`, perhaps bound
        by another process: the kernel hands each connection to one of the processes)."""
        sock.setblocking(False)
        self._listeners[sock] = asyncio.create_task(self._accept_forever(sock))

    async def _accept_forever(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await wait_readable(loop, sock)
            if self._shares is not None:
                waited = 0.0
                while not self._shares.holds_fewest() and waited < ACCEPT_DEFER_S:
                    await asyncio.sleep(DEFER_STEP_S)
                    waited += DEFER_STEP_S
            try:
                conn, _peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                continue  # another process took it
            except OSError as exc:  # out of descriptors or buffers: wait, then go on
                log.warning("LMTP accept failed (%s); retrying", exc.strerror)
                await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(self._start(conn))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start(self, conn: socket.socket) -> None:
        if self._shares is not None:
            self._shares.opened()
        try:
            conn.setblocking(False)
            try:
                if conn.family == socket.AF_UNIX:
                    reader, writer = await asyncio.open_unix_connection(sock=conn, limit=READ_LIMIT)
                else:
                    reader, writer = await asyncio.open_connection(sock=conn, limit=READ_LIMIT)
            except BaseException:
                conn.close()
                raise
            await self._accept(reader, writer)
        finally:
            if self._shares is not None:
                self._shares.closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self._max_connections:
            writer.write(b"421 4.3.2 Too many connections, try again later\r\n")
            try:
                await writer.drain()
            except OSError:
                pass
            writer.close()
            return
        connection = LmtpConnection(
            reader, writer, self._handler, hostname=self._hostname, limits=self._limits
        )
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always inside a task
        self._connections[task] = connection
        try:
            await connection.run()
        except asyncio.CancelledError:
            pass
        except Exception:  # one connection's bug must not reach the loop
            log.exception("session %s: connection failed", connection.session.session_id)
        finally:
            self._connections.pop(task, None)

    async def stop(self, grace_s: float = 60.0) -> None:
        """Stop accepting, finish deliveries in flight (up to `grace_s`), close the rest."""
        for accepting in self._listeners.values():
            accepting.cancel()
        await asyncio.gather(*self._listeners.values(), return_exceptions=True)
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()
        for task in self._starting - set(self._connections):
            task.cancel()  # not yet greeted
        for task, connection in list(self._connections.items()):
            connection.closing = True
            if not connection.busy:
                task.cancel()
        pending = list(self._connections)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        self._closed.set()
        log.info("LMTP stopped")
