"""The listener: many clients at once, the connection caps, and a stop that changes no
maildrop."""

from __future__ import annotations

import poplib
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cryptmail.pop3 import Pop3Listener

from .conftest import OTHER, USER, Pop3Rig, start_rig

MESSAGE = b"Subject: hello\r\n\r\nbody\r\n"


def test_many_clients_of_several_users_at_once(rig: Pop3Rig) -> None:
    rig.add_user(OTHER)
    for email in (USER, OTHER):
        for _ in range(3):
            rig.deliver(MESSAGE, email)

    def session(n: int) -> tuple[int, list[bytes]]:
        pop = rig.login(USER if n % 2 else OTHER)
        count, _ = pop.stat()
        bodies = [b"\r\n".join(pop.retr(i)[1]) for i in range(1, count + 1)]
        pop.quit()
        return count, bodies

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(session, range(16)))
    assert all(count == 3 for count, _ in results)
    expected = MESSAGE.removesuffix(b"\r\n")
    assert all(body == expected for _, bodies in results for body in bodies)


def test_connection_caps(tmp_path: Path) -> None:
    for rig in start_rig(tmp_path, **{"pop3.max_connections_per_ip": 2}):
        first, second = rig.client(), rig.client()
        with socket.create_connection(("127.0.0.1", rig.pop3.port), timeout=10) as sock:
            assert sock.makefile("rb").readline() == (
                b"-ERR [SYS/TEMP] Too many connections from your address.\r\n"
            )
        # Counted over both listeners (on the TLS one, after the handshake).
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        # (poplib.POP3_SSL, refused in its constructor, would leave its socket open.)
        with (
            socket.create_connection(("127.0.0.1", rig.pop3s.port), timeout=10) as raw,
            context.wrap_socket(raw) as tls,
            tls.makefile("rb") as greeting,
        ):
            assert b"Too many connections" in greeting.readline()
        first.quit()
        third = rig.client()
        assert third.getwelcome() == b"+OK cryptmail POP3 ready."
        third.quit()
        second.quit()


async def _restart(rig: Pop3Rig) -> None:
    rig.pop3 = Pop3Listener(rig.pop3.context, "127.0.0.1", 0, implicit_tls=False)
    await rig.pop3.start()


def test_a_stop_ends_sessions_without_their_update(rig: Pop3Rig) -> None:
    rig.deliver(MESSAGE)
    pop = rig.login()
    pop.dele(1)
    rig.run(rig.pop3.stop(1.0))
    with pytest.raises((poplib.error_proto, OSError, EOFError)):
        pop.quit()
    assert rig.blob_count() == 1
    rig.run(_restart(rig))
    pop = rig.login()
    assert pop.stat()[0] == 1
    pop.quit()
