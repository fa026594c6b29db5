"""The LMTP listener: TCP or a Unix socket, a connection cap and a graceful stop.

`stop()` closes the listeners first, tells idle connections to go (421), lets every
delivery in flight finish and send its replies, and only then cancels what is left.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

from cryptmail.delivery._protocol import READ_LIMIT, Handler, Limits, LmtpConnection
from cryptmail.errors import ConfigError

log = logging.getLogger(__name__)


def parse_address(address: str) -> tuple[str, int] | Path:
    """`HOST:PORT` or `unix:/path`. Raises ConfigError."""
    if address.startswith("unix:"):
        path = address[5:]
        if not path:
            raise ConfigError(f"listen address {address!r} has no socket path")
        return Path(path)
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"listen address {address!r} is not HOST:PORT or unix:/path")
    return host.strip("[]"), int(port)


class LmtpServer:
    """Serves LMTP with one handler on any number of listeners."""

    def __init__(
        self,
        handler: Handler,
        *,
        hostname: str = "",
        limits: Limits | None = None,
        max_connections: int = 64,
    ) -> None:
        self._handler = handler
        self._hostname = hostname or socket.getfqdn()
        self._limits = limits or Limits()
        self._max_connections = max_connections
        self._servers: list[asyncio.Server] = []
        self._connections: dict[asyncio.Task[None], LmtpConnection] = {}

    @property
    def ports(self) -> list[int]:
        """The TCP ports listened on (useful with port 0)."""
        found = []
        for server in self._servers:
            for sock in server.sockets:
                name = sock.getsockname()
                if isinstance(name, tuple):
                    found.append(int(name[1]))
        return found

    async def listen(self, address: str) -> None:
        """Start listening on `address`. Raises ConfigError, OSError."""
        target = parse_address(address)
        if isinstance(target, Path):
            if target.is_socket():
                target.unlink()
            server = await asyncio.start_unix_server(
                self._accept, path=str(target), limit=READ_LIMIT
            )
            # Postfix's lmtp client runs as the postfix user.
            os.chmod(target, 0o666)  # noqa: S103 - a socket; access is LMTP, not files
        else:
            host, port = target
            server = await asyncio.start_server(
                self._accept, host, port, limit=READ_LIMIT, reuse_address=True
            )
        self._servers.append(server)
        log.info("LMTP listening on %s", address)

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
        except Exception:  # noqa: BLE001 - one connection's bug must not reach the loop
            log.exception("session %s: connection failed", connection.session.session_id)
        finally:
            self._connections.pop(task, None)

    async def stop(self, grace_s: float = 60.0) -> None:
        """Stop accepting, finish deliveries in flight (up to `grace_s`), close the rest."""
        for server in self._servers:
            server.close()
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
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        log.info("LMTP stopped")
