"""Open IMAP sessions end when their user's credentials change (issue 14, finding 3).

Before: after a password change or an app-password revocation new logins failed, but a
session already open (IDLE keeps one for days) went on reading mail. Now every session
of that user answers ``* BYE [UNAVAILABLE] Credentials changed`` within the watcher's
poll (2 s) and the connection closes; other users' sessions go on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cryptmail.config import load_config
from cryptmail.imap.server._errors import ConnectionClosed
from cryptmail.imap.server._session import Session
from cryptmail.keys import add_app_password, change_password, revoke_app_password, unlock_account
from cryptmail.secret import Password
from cryptmail.users import get_user

from ..raw_client import RawClient
from ..server_rig import PASSWORD, USER, ImapRig, start_rig

BOB = "bob@example.org"
BOB_PASSWORD = "bob's own password 1"
DEADLINE_S = 5.0
BYE = b"* BYE [UNAVAILABLE] Credentials changed"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _login(rig: ImapRig, email: str, password: str) -> RawClient:
    client = RawClient.connect(rig.port)
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    _, done = client.ask(f'LOGIN {email} "{quoted}"'.encode())
    assert b" OK " in done, done
    return client


def _selected(rig: ImapRig, email: str = USER, password: str = PASSWORD) -> RawClient:
    client = _login(rig, email, password)
    _, done = client.ask(b"SELECT INBOX")
    assert b" OK " in done, done
    return client


def _idling(rig: ImapRig) -> RawClient:
    client = _selected(rig)
    client.send(b"i1 IDLE\r\n")
    assert client.line().startswith(b"+ ")
    return client


def _ended(client: RawClient, since: float) -> None:
    """The next line is the BYE, within DEADLINE_S of `since`, and then the socket closes."""
    client.sock.settimeout(DEADLINE_S + 5)
    line = client.line()
    waited = time.monotonic() - since
    assert line.startswith(BYE), line
    assert waited < DEADLINE_S, f"BYE after {waited:.1f} s"
    assert client.line() == b""  # closed by the server


def _still_open(client: RawClient) -> None:
    _, done = client.ask(b"NOOP")
    assert b" OK " in done, done


def test_a_password_change_ends_idle_and_selected_sessions_of_that_user_only(
    rig: ImapRig,
) -> None:
    rig.add_user(BOB, BOB_PASSWORD)
    idle, selected, bob = _idling(rig), _selected(rig), _selected(rig, BOB, BOB_PASSWORD)
    authenticated = _login(rig, USER, PASSWORD)
    try:
        since = time.monotonic()
        rig.run(
            change_password(
                rig.engine,
                USER,
                Password.from_str(PASSWORD),
                Password.from_str("the new password 2"),
                rig.config.crypto,
            )
        )
        for client in (idle, selected, authenticated):
            _ended(client, since)
        _still_open(bob)
        _, done = _login(rig, USER, "the new password 2").ask(b"LOGOUT")
        assert b" OK " in done
    finally:
        for client in (idle, selected, bob, authenticated):
            client.close()


def test_an_app_password_revoked_ends_the_sessions(rig: ImapRig) -> None:
    async def make_app_password() -> str:
        account, _slot = await unlock_account(
            rig.engine, USER, Password.from_str(PASSWORD), rig.config.crypto
        )
        return await add_app_password(rig.engine, account, "phone", rig.config.crypto)

    secret = rig.run(make_app_password())
    phone, main = _selected(rig, USER, secret), _idling(rig)
    try:

        async def revoke() -> None:
            async with rig.engine.connect() as conn:
                user = await get_user(conn, USER)
            await revoke_app_password(rig.engine, user.id, "phone")

        since = time.monotonic()
        rig.run(revoke())
        _ended(phone, since)
        _ended(main, since)
    finally:
        phone.close()
        main.close()


def test_the_login_that_re_keys_keeps_its_session(rig: ImapRig) -> None:
    """A revocation without the key leaves a re-key pending; the next login makes it and
    moves the generation. That login's own session holds the new keys and must live
    on (and read mail sealed to them); only older sessions end."""

    async def revoke_without_key() -> None:
        account, _slot = await unlock_account(
            rig.engine, USER, Password.from_str(PASSWORD), rig.config.crypto
        )
        await add_app_password(rig.engine, account, "phone", rig.config.crypto)
        await revoke_app_password(rig.engine, account.user.id, "phone")

    rig.run(revoke_without_key())
    rekeying = _selected(rig)  # this login re-keys
    try:
        rig.deliver(b"Subject: after the re-key\r\n\r\nsealed to the new key\r\n")
        time.sleep(2 * 2.0 + 0.5)  # two polls of the watcher
        _still_open(rekeying)
        lines, done = rekeying.ask(b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b" OK " in done, done
        assert b"after the re-key" in b"".join(lines)
    finally:
        rekeying.close()


def test_pipelined_commands_after_the_change_are_not_run(rig: ImapRig) -> None:
    client = _selected(rig)
    try:
        rig.run(
            change_password(
                rig.engine,
                USER,
                Password.from_str(PASSWORD),
                Password.from_str("the new password 2"),
                rig.config.crypto,
            )
        )
        time.sleep(3)  # past the poll: the session knows, and waits for the client
        client.send(b"a1 NOOP\r\na2 FETCH 1:* (FLAGS)\r\n")
        client.sock.settimeout(DEADLINE_S)
        assert client.line().startswith(BYE)
        assert client.line() == b""
    except TimeoutError:
        pytest.fail("the session did not end")
    finally:
        client.close()


class _SlowWriter:
    """A StreamWriter whose drain waits until released, as for a client that reads slowly."""

    def __init__(self) -> None:
        self.written = b""
        self.released = asyncio.Event()
        self.transport = SimpleNamespace(get_write_buffer_size=lambda: 0)

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        await self.released.wait()

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


async def test_told_while_a_write_drains_it_ends_before_the_read_waits(tmp_path: Path) -> None:
    told: list[Callable[[], None]] = []

    def watch(_user: int, _generation: int, on_change: Callable[[], None]) -> str:
        told.append(on_change)
        return "a watch"

    watcher = SimpleNamespace(watch=watch, unwatch=lambda _watch: None)
    accounts = SimpleNamespace(release=lambda _account, ended_generation=None: None)
    config = load_config(None, data_dir=str(tmp_path))
    context: Any = SimpleNamespace(config=config, watcher=watcher, accounts=accounts, fulltext=None)
    writer = _SlowWriter()
    stand_in: Any = writer  # only what Session uses of a StreamWriter
    account: Any = SimpleNamespace(user=SimpleNamespace(id=1))
    session = Session(
        context, asyncio.StreamReader(), stand_in, peer_ip="127.0.0.1", tls_active=False
    )
    session.authenticated(account, 0)
    reading = asyncio.create_task(session.next_event())
    await asyncio.sleep(0.05)  # blocked in the drain, before the read and its deadline
    (on_change,) = told
    on_change()
    writer.released.set()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(reading, 2)  # not the 30-minute idle timeout
    assert writer.written.startswith(BYE)
