"""Listening sockets for every listener of `serve`: TCP or a Unix socket.

LMTP, SASL and any later listener on a Unix socket bind it here, with no moment where
others may connect and mode 0660 for the owner and one group.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import os
import socket
import time
from pathlib import Path

from cryptmail.errors import ConfigError

BACKLOG = 128


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


def socket_group_id(
    group: str, data_dir: Path, *, setting: str = "lmtp.socket_group"
) -> int | None:
    """The group for a Unix listening socket: `group` (the option `setting`, a name or
    a number), else the data directory's group, else None. Raises ConfigError."""
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
        raise ConfigError(f"{setting} = {group!r}: no such group on this system") from None


def bind_listener(
    address: str,
    *,
    wait_s: float = 0.0,
    group: int | None = None,
    setting: str = "lmtp.socket_group",
) -> socket.socket:
    """A listening socket on `address`, TCP or Unix. Raises ConfigError, OSError.

    A Unix socket gets mode 0660 and, if given, the group `group` (named by the option
    `setting` in errors): whoever may connect to LMTP can hand in mail for any user, and
    to SASL can try passwords, so only the owner and that group (Postfix runs as the
    postfix user: make it `postfix`) may.

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
                _give_to_group(target, group, setting)
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


def _give_to_group(path: Path, group: int, setting: str) -> None:
    try:
        os.chown(path, -1, group)
    except PermissionError:
        raise ConfigError(
            f"cannot give the socket {path} to group {group}: this process is not a "
            f"member of it (set {setting} to a group of the user cryptmail runs as)"
        ) from None


def _tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


async def wait_readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Wait until `sock` is readable (on a listening socket: a connection waits to be
    accepted), without reading or accepting anything."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock, wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock)
