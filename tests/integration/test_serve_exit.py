"""SIGTERM ends a real `cryptmail serve` within a bound, with exit code 0, when it comes
while sessions (several users, one client address) are in the middle of long pipelines
of queries, again and again.

A session cancelled mid-query has its SQLite connection terminated by SQLAlchemy, and a
second cancel (the end of the stop's grace) leaves its graceful close behind, which
`asyncio.run` alone could wait on for ever at exit (tests/cli/test_runtime_exit.py
breaks a query off twice on purpose). Here the server's whole stop is exercised.
"""

from __future__ import annotations

import asyncio
import signal
import smtplib
import subprocess
from pathlib import Path

import pytest

from .cryptmail_server import PASSWORD, CryptmailServer, make_users

pytestmark = pytest.mark.integration

USERS = [f"user{n}@example.org" for n in range(4)]
SESSIONS = 16  # four a user, all from 127.0.0.1
ROUNDS = 5
MESSAGES = 15
EXIT_BOUND_S = 30.0  # the stop's grace is 5 s; sessions mid-query end at once
CONFIG = """
[imap]
max_connections_per_ip = 200
[lmtp]
processes = 1
"""
# A long pipeline of queries: at any moment some are running in the database.
PIPELINE = b"".join(
    b"s%d STATUS INBOX (MESSAGES UNSEEN)\r\ne%d EXAMINE INBOX\r\n"
    b"f%d FETCH 1:* (FLAGS ENVELOPE BODY.PEEK[TEXT])\r\nx%d SEARCH TEXT line\r\n" % (k, k, k, k)
    for k in range(300)
)


def _deliver(port: int) -> None:
    with smtplib.LMTP("127.0.0.1", port) as lmtp:
        for n in range(MESSAGES):
            for user in USERS:
                body = (
                    f"From: a@example.net\r\nTo: {user}\r\nSubject: note {n}\r\n\r\n"
                    + "line of text\r\n" * 200
                )
                lmtp.sendmail("a@example.net", [user], body.encode())


async def _busy_session(
    port: int, user: str
) -> tuple[asyncio.StreamWriter, asyncio.Task[None], asyncio.Event]:
    """A logged-in session that sent PIPELINE; the event is set once answers come."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await reader.readline()).startswith(b"* OK")
    writer.write(f'a LOGIN "{user}" "{PASSWORD}"\r\n'.encode())
    while not (line := await reader.readline()).startswith(b"a "):
        assert line, "closed during login"
    assert line.startswith(b"a OK"), line
    writer.write(PIPELINE)

    answering = asyncio.Event()

    async def drain() -> None:
        while await reader.read(1 << 16):
            answering.set()

    return writer, asyncio.create_task(drain()), answering


async def _terminate_mid_query(server: CryptmailServer) -> int | None:
    assert server.process is not None
    sessions = await asyncio.gather(
        *(_busy_session(server.imap_port, USERS[n % len(USERS)]) for n in range(SESSIONS))
    )
    # The pipelines are under way: every session has answers coming (each has most of
    # its 1,200 queries still to run), rather than a fixed 1.5 s sleep.
    await asyncio.wait_for(asyncio.gather(*(answering.wait() for *_, answering in sessions)), 60)
    server.process.send_signal(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    try:
        code: int | None = await loop.run_in_executor(None, server.process.wait, EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        code = None
    for writer, drain, _answering in sessions:
        writer.close()
        drain.cancel()
    await asyncio.gather(*(drain for _, drain, _ in sessions), return_exceptions=True)
    return code


def test_sigterm_mid_query_exits_with_zero_within_a_bound_every_time(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", dict.fromkeys(USERS, 2))
    for round_ in range(ROUNDS):
        server = CryptmailServer(data_dir, imap=True, config=CONFIG)
        server.start(timeout=120)
        try:
            if round_ == 0:
                _deliver(server.port)
            code = asyncio.run(_terminate_mid_query(server))
        finally:
            server.stop()  # a second SIGTERM, then SIGKILL: only if the first hung
        log = server.log_path.read_text(errors="replace")
        assert code == 0, (round_, log[-3000:])
        assert log.count("cryptmail stopped") == round_ + 1
        assert "did not end" not in log
