"""A burst of 100 simultaneous first logins, 100 users from one address (a webmail
host in `auth.trusted_networks`), against a real `serve` with the default
`crypto.argon2` settings: none is refused `NO [UNAVAILABLE]` (the old queue of 32
refused 64 of them; docs/configuration.md has the numbers). Each login runs Argon2id
(the slot made at 19 MiB, then rehashed to the server's 46 MiB)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .cryptmail_server import PASSWORD, CryptmailServer, make_users

pytestmark = pytest.mark.integration

USERS = [f"burst{n}@example.org" for n in range(100)]
CONFIG = """
[imap]
max_connections_per_ip = 500
[auth]
trusted_networks = ["127.0.0.0/8"]
[lmtp]
processes = 1
"""


async def _login(port: int, user: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert (await reader.readline()).startswith(b"* OK")
        writer.write(f'a LOGIN "{user}" "{PASSWORD}"\r\n'.encode())
        while not (line := await reader.readline()).startswith(b"a "):
            assert line, "closed during login"
        return line
    finally:
        writer.close()


async def _burst(port: int) -> list[bytes]:
    return await asyncio.gather(*(_login(port, user) for user in USERS))


def test_a_burst_of_100_first_logins_is_queued_not_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", dict.fromkeys(USERS, 2))
    with CryptmailServer(data_dir, imap=True, config=CONFIG) as server:
        replies = asyncio.run(_burst(server.imap_port))
    refused = [line for line in replies if not line.startswith(b"a OK")]
    assert refused == [], f"{len(refused)} of {len(replies)} refused, e.g. {refused[0]!r}"
