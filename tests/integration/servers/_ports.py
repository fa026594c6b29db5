"""Free loopback TCP ports for test servers."""

from __future__ import annotations

import random
import socket
import threading

LOOPBACK = "127.0.0.1"
# Below Linux's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default):
# a port from bind(0) is an ephemeral one, which the kernel may hand to any outgoing
# connection (to PostgreSQL, MariaDB, a server under test) between our probe and the
# server's own bind, and the server then fails with "address already in use". No
# outgoing connection is ever given a port from this range.
PORT_RANGE = range(20000, 32768)
_handed_out: set[int] = set()
_lock = threading.Lock()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now and that this
    process has not handed out before.

    The port is released before returning; another program choosing ports the same
    way at the same moment could still take it, which random choice over 12,768 ports
    makes unlikely.
    """
    with _lock:
        for _ in range(1000):
            port = random.choice(PORT_RANGE)
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((LOOPBACK, port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free loopback port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")
