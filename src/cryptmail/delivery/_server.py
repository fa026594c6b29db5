"""The LMTP listener: TCP or a Unix socket, a connection cap and a graceful stop.

`LmtpServer` has the listener shape `serve` runs (start, wait_closed, stop with a grace
period). `stop()` closes the listeners first, tells idle connections to go (421), lets every
delivery in flight finish and send its replies, and only then cancels what is left.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from cryptmail.delivery._protocol import READ_LIMIT, Handler, Limits, LmtpConnection
from cryptmail.delivery._shares import ConnectionShares
from cryptmail.errors import ConfigError

log = logging.getLogger(__name__)

BACKLOG = 128
ACCEPT_DEFER_S = 0.002
"""How long a process holding more connections than another leaves a new one to it."""


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


def socket_group_id(group: str, data_dir: Path) -> int | None:
    """The group for a Unix listening socket: `group` (`lmtp.socket_group`, a name or a
    number), else the data directory's group, else None. Raises ConfigError."""
    if not group:
        try:
            return data_dir.stat().st_gid
        except FileNotFoundError:
            return None
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"lmtp.socket_group = {group!r}: no such group on this system") from None


def bind_listener(address: str, *, wait_s: float = 0.0, group: int | None = None) -> socket.socket:
    """A listening socket on `address`, TCP or Unix. Raises ConfigError, OSError.

    A Unix socket gets mode 0660 and, if given, the group `group`: whoever may connect
    can hand in mail for any user, so only the owner and that group (Postfix's lmtp
    client runs as the postfix user: make it `postfix`) may.

    A TCP port still held by a stopping process (e.g. LMTP workers of a killed `serve`,
    finishing their deliveries) is retried for up to `wait_s` seconds.
    """
    target = parse_address(address)
    if isinstance(target, Path):
        if target.is_socket():
            target.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # No moment where others may connect: bind under a umask that shuts them out.
            old_umask = os.umask(0o177)
            try:
                sock.bind(str(target))
            finally:
                os.umask(old_umask)
            if group is not None:
                _give_to_group(target, group)
            os.chmod(target, 0o660)
        except OSError:
            sock.close()
            raise
    else:
        host, port = target
        deadline = time.monotonic() + wait_s
        while True:
            sock = _tcp_socket(host, port)
            try:
                sock.bind((host, port))
                break
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def _give_to_group(path: Path, group: int) -> None:
    try:
        os.chown(path, -1, group)
    except PermissionError:
        raise ConfigError(
            f"cannot give the LMTP socket {path} to group {group}: this process is not a "
            "member of it (set lmtp.socket_group to a group of the user cryptmail runs as)"
        ) from None


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock, wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock)


def _tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


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
            await _readable(loop, sock)
            if self._shares is not None and not self._shares.holds_fewest():
                await asyncio.sleep(ACCEPT_DEFER_S)
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
