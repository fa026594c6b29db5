"""The listener's connection caps."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from ..server_rig import start_rig


def test_the_global_connection_cap_says_bye_and_closes(tmp_path: Path) -> None:
    """(h) imap.max_connections counts every client; the next one is told why and closed."""
    rig_iter = start_rig(tmp_path, **{"imap.max_connections": 2})
    rig = next(rig_iter)
    try:
        held = [socket.create_connection(("127.0.0.1", rig.port), timeout=10) for _ in range(2)]
        files = [sock.makefile("rb") for sock in held]
        for file in files:
            assert file.readline().startswith(b"* OK")
        extra = socket.create_connection(("127.0.0.1", rig.port), timeout=10)
        extra_file = extra.makefile("rb")
        assert (
            extra_file.readline()
            == b"* BYE Too many connections to this server; try again later.\r\n"
        )
        assert extra_file.readline() == b""  # closed
        extra.close()
        held[0].close()
        files[0].close()
        # A freed place is taken again (the count went down when the session ended).
        for _ in range(50):
            again = socket.create_connection(("127.0.0.1", rig.port), timeout=10)
            greeting = again.makefile("rb").readline()
            again.close()
            if greeting.startswith(b"* OK"):
                break
            time.sleep(0.1)  # the server has not seen the close yet
        else:
            raise AssertionError("the closed connection's place was never freed")
        for sock, file in zip(held[1:], files[1:], strict=True):
            file.close()
            sock.close()
    finally:
        next(rig_iter, None)
