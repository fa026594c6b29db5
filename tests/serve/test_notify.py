"""SystemdNotifier: datagrams on a real Unix socket standing in for $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from cryptmail.serve._notify import SystemdNotifier


def _listener(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    return sock


def test_messages_go_to_the_socket_as_one_datagram_each(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with _listener(path) as sock:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
        notifier.notify("READY=1", "STATUS=serving")
        notifier.reloading()
        assert sock.recv(4096) == b"READY=1\nSTATUS=serving"
        first, second = sock.recv(4096).decode().split("\n")
        assert first == "RELOADING=1" and second.startswith("MONOTONIC_USEC=")


def test_an_abstract_socket_name_is_understood() -> None:
    name = f"cryptmail-test-{os.getpid()}"
    with _listener("\0" + name) as sock:
        SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).notify("STOPPING=1")
        assert sock.recv(4096) == b"STOPPING=1"


def test_without_systemd_or_with_its_socket_gone_nothing_fails(tmp_path: Path) -> None:
    SystemdNotifier({}).notify("READY=1")
    SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).notify("READY=1")


async def test_the_watchdog_pings_at_half_the_interval_until_stopped(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with _listener(path) as sock:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        assert notifier.watchdog_s == 0.2
        stop = asyncio.Event()
        task = asyncio.create_task(notifier.watchdog_forever(stop))
        got = [await asyncio.to_thread(sock.recv, 100) for _ in range(3)]
        stop.set()
        await task
        assert got == [b"WATCHDOG=1"] * 3


def test_the_watchdog_is_for_the_process_systemd_named() -> None:
    other = SystemdNotifier(
        {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    )
    mine = SystemdNotifier(
        {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert other.watchdog_s == 0 and mine.watchdog_s == 1.0


def test_a_manager_that_does_not_read_never_blocks_the_sender(tmp_path: Path) -> None:
    """The queue of an unread datagram socket fills after a few messages; the notifier
    then drops messages instead of blocking the event loop it runs on."""
    path = str(tmp_path / "notify")
    with _listener(path) as sock:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
        for _ in range(1000):  # far beyond net.unix.max_dgram_qlen; returns at once
            notifier.notify("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"
