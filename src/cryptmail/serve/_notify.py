"""Telling systemd how `serve` is doing (`Type=notify`), without a new dependency.

The protocol is one datagram per message to the Unix socket systemd names in
$NOTIFY_SOCKET (a path, or an abstract name written with a leading "@"): READY=1 once
every listener accepts, STATUS= a line for `systemctl status`, RELOADING=1 and READY=1
around a SIGHUP reload, STOPPING=1 at the stop, and WATCHDOG=1 at half the interval
systemd asks for in $WATCHDOG_USEC (`WatchdogSec=`), so a server whose event loop hangs
is killed and restarted. Without $NOTIFY_SOCKET (not under systemd) it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """The service manager's notification socket, from the environment `serve` started in."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._warned = False
        self.watchdog_s = 0.0
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process the watchdog is for; a child must not answer.
        if usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1_000_000

    @classmethod
    def from_environment(cls) -> SystemdNotifier:
        return cls(os.environ)

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *fields: str) -> None:
        """Send `fields` ("READY=1", "STATUS=...") as one message; a failure is logged,
        never raised: the service must not stop because its manager did not listen."""
        if not self._address:
            return
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Never wait: this runs on the event loop, and a manager that does not
                # read (its queue holds only net.unix.max_dgram_qlen datagrams) must not
                # stop the server. A full queue drops the message, as a lost ping would.
                sock.sendto(message, socket.MSG_DONTWAIT, self._address)
        except OSError as exc:
            # Once, not at every watchdog ping: the journal would fill with it.
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            log.log(level, "systemd notification not sent (%s)", exc.strerror or exc)

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd match this reload to the `systemctl reload` waiting.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    async def watchdog_forever(self, stop: asyncio.Event) -> None:
        """WATCHDOG=1 at half the interval systemd asked for, until `stop` is set. It runs
        on the event loop, so a loop that hangs stops the pings and systemd acts."""
        if not self.enabled or self.watchdog_s <= 0:
            return
        while not stop.is_set():
            self.notify("WATCHDOG=1")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.watchdog_s / 2):
                    await stop.wait()
