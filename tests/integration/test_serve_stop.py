"""SIGTERM ends a real `cryptmail serve` holding hundreds of IMAP connections within its
grace period, with exit code 0: 300 sessions of eight users from one address idling
(IDLE polling every two seconds: the change feed is off), 20 in the middle of long
pipelines of STATUS, LIST, EXAMINE and FETCH, and a few clients that stopped reading.

Under 10,000 connections a SIGTERM once seemed ignored: sessions that swallowed their
cancellation (IDLE between two waits) outlived the listener's stop, and the process
then waited on them at its exit. The log must not name a session left running."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest

from cryptmail.serve import GRACE_S

from .cryptmail_server import PASSWORD, CryptmailServer, make_users

pytestmark = pytest.mark.integration

USERS = [f"user{n}@example.org" for n in range(8)]
IDLERS, BUSY, DEAF = 300, 20, 5
CONFIG = """
[imap]
max_connections = 2000
max_connections_per_ip = 2000
[events]
mode = "off"
[lmtp]
processes = 1
"""


async def _logged_in(
    port: int, user: str, *, select: bool = True
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await reader.readline()).startswith(b"* OK")
    commands = [(b"a", f'LOGIN "{user}" "{PASSWORD}"'.encode())]
    if select:
        commands.append((b"b", b"SELECT INBOX"))
    for tag, command in commands:
        writer.write(tag + b" " + command + b"\r\n")
        while not (line := await reader.readline()).startswith(tag + b" "):
            assert line, "closed during login"
        assert line.startswith(tag + b" OK"), line
    return reader, writer


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    last = b""
    while data := await reader.read(1 << 16):
        last = data
    return last


async def _load_then_terminate(server: CryptmailServer) -> tuple[int | None, list[bytes]]:
    port = server.imap_port
    for user in USERS:  # each user's first login (Argon2) once, as a returning user's
        _, writer = await _logged_in(port, user, select=False)
        writer.close()
    gate = asyncio.Semaphore(50)

    async def idler(index: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with gate:
            reader, writer = await _logged_in(port, USERS[index % len(USERS)])
            writer.write(b"c IDLE\r\n")
            assert (await reader.readline()).startswith(b"+ ")
            return reader, writer

    idlers = await asyncio.gather(*(idler(n) for n in range(IDLERS)))
    busy = [await _logged_in(port, USERS[n % len(USERS)]) for n in range(BUSY)]
    pipeline = b"".join(
        b's%d STATUS INBOX (MESSAGES)\r\nl%d LIST "" *\r\n'
        b"e%d EXAMINE INBOX\r\nf%d FETCH 1:* (ENVELOPE)\r\n" % (k, k, k, k)
        for k in range(500)
    )
    for _, writer in busy:
        writer.write(pipeline)
    readers = [asyncio.create_task(_read_until_closed(r)) for r, _ in [*idlers, *busy]]
    deaf = [await _logged_in(port, user) for user in USERS[:DEAF]]
    for _, writer in deaf:  # never read again: their replies pile up in the server
        writer.write(pipeline)
    await asyncio.sleep(1)  # the pipelines are under way

    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    try:
        code: int | None = await loop.run_in_executor(None, server.process.wait, GRACE_S + 10)
    except subprocess.TimeoutExpired:
        code = None
    lasts = await asyncio.gather(*readers)
    for _, writer in [*idlers, *busy, *deaf]:
        writer.close()
    return code, lasts


def test_sigterm_ends_serve_with_hundreds_of_connections_within_its_grace(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", dict.fromkeys(USERS, 2))
    server = CryptmailServer(data_dir, imap=True, config=CONFIG)
    server.start(timeout=120)
    try:
        code, lasts = asyncio.run(_load_then_terminate(server))
    finally:
        server.stop()  # a second SIGTERM, then SIGKILL: only if the first was ignored
    log = server.log_path.read_text(errors="replace")
    assert code == 0, log[-3000:]
    # Every session was told why it ended.
    assert [last for last in lasts if b"* BYE Server shutting down." not in last] == []
    assert "cryptmail stopped" in log
    assert "did not end" not in log
