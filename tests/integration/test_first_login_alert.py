"""Against a live `cryptmail serve`: an ISPmail row (a {BLF-CRYPT} hash, no keys) logs in
over IMAP, gets its keys and an `* OK [ALERT]` that it has no recovery code, at every
login, until a web sign-in (here its keys-layer half, `ensure_recovery_code`, on the
same database) made one."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import bcrypt

from cryptmail.db import create_engine
from cryptmail.keys import ensure_recovery_code, has_recovery_code, unlock_account
from cryptmail.secret import Password
from cryptmail.users import add_user

from .cryptmail_server import CRYPTO, CryptmailServer, db_url, make_users

ADDRESS = "legacy@example.org"
SECRET = "legacy summer sun"


def login_lines(port: int) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        replies = sock.makefile("rb")
        replies.readline()
        sock.sendall(f'a LOGIN "{ADDRESS}" "{SECRET}"\r\n'.encode())
        lines = [replies.readline().rstrip(b"\r\n")]
        while not lines[-1].startswith(b"a "):
            lines.append(replies.readline().rstrip(b"\r\n"))
        sock.sendall(b"b LOGOUT\r\n")
    return lines


def test_imap_alerts_until_the_web_sign_in_made_a_recovery_code(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {})
    guide_hash = "{BLF-CRYPT}" + bcrypt.hashpw(SECRET.encode(), bcrypt.gensalt(5)).decode()

    async def add_row() -> None:
        engine = create_engine(db_url(data_dir))
        async with engine.begin() as conn:
            await add_user(conn, ADDRESS, guide_hash, crypt=2)
        await engine.dispose()

    async def web_sign_in() -> tuple[str | None, bool]:
        engine = create_engine(db_url(data_dir))
        try:
            account, _slot = await unlock_account(
                engine, ADDRESS, Password.from_str(SECRET), CRYPTO
            )
            code = await ensure_recovery_code(engine, account, CRYPTO)
            return code, await has_recovery_code(engine, account.user.id)
        finally:
            await engine.dispose()

    asyncio.run(add_row())
    server = CryptmailServer(data_dir, imap=True, config="[crypto.argon2]\nmemory_kib = 19456\n")
    server.start()
    try:
        for _ in range(2):  # the first login makes the keys, the second finds them
            lines = login_lines(server.imap_port)
            assert lines[-1].startswith(b"a OK"), lines
            alerts = [line for line in lines if line.startswith(b"* OK [ALERT]")]
            assert len(alerts) == 1 and b"no recovery code" in alerts[0], lines
        code, has_code = asyncio.run(web_sign_in())
        assert code is not None and has_code
        lines = login_lines(server.imap_port)
        assert lines[-1].startswith(b"a OK") and not any(b"[ALERT]" in x for x in lines)
    finally:
        server.stop()
