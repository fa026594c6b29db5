"""A live ManageSieve listener on loopback over a migrated SQLite database, its event
loop in a thread so that blocking clients (raw sockets, sievelib) can talk to it."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config, load_config
from cryptmail.db import UserId, create_engine, upgrade
from cryptmail.keys import CredentialWatcher, LoginThrottle, create_user
from cryptmail.managesieve import ManagesieveListener, make_managesieve_context
from cryptmail.secret import Password
from cryptmail.users import add_domain, get_user
from loop_thread import start_loop_thread, stop_loop_thread

PASSWORD = "p%ss word' 1"
USER = "alice@example.org"
OTHER = "bob@example.org"

T = TypeVar("T")


def plain(address: str, password: str) -> str:
    return base64.b64encode(b"\x00" + address.encode() + b"\x00" + password.encode()).decode()


class Wire:
    """A raw client connection: send bytes, read response lines."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline().rstrip(b"\r\n")

    def until_status(self) -> list[bytes]:
        """Lines up to and including the OK, NO or BYE that ends a response."""
        lines: list[bytes] = []
        while True:
            line = self.line()
            if line.startswith(b"{") and line.endswith(b"}"):
                size = int(line[1:-1])
                lines.append(self.file.read(size))
                assert self.file.readline() == b"\r\n"  # the end of the literal's line
                continue
            lines.append(line)
            if line.split(b" ")[0] in (b"OK", b"NO", b"BYE") or not line:
                return lines

    def command(self, data: bytes) -> list[bytes]:
        self.send(data)
        return self.until_status()

    def starttls(self) -> list[bytes]:
        assert self.command(b"STARTTLS\r\n")[-1].startswith(b"OK")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock)
        self.file = self.sock.makefile("rb")
        return self.until_status()

    def login(self, address: str = USER, password: str = PASSWORD) -> list[bytes]:
        return self.command(b'AUTHENTICATE "PLAIN" "%s"\r\n' % plain(address, password).encode())

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@dataclass
class SieveRig:
    config: Config
    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine
    throttle: LoginThrottle
    listener: ManagesieveListener
    wires: list[Wire] = field(default_factory=list)
    """Every connection `wire` opened: closed when the rig stops."""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def add_user(self, email: str, password: str = PASSWORD) -> None:
        self.run(create_user(self.engine, email, Password.from_str(password), self.config.crypto))

    def user_id(self, email: str = USER) -> UserId:
        async def work() -> UserId:
            async with self.engine.connect() as conn:
                return (await get_user(conn, email)).id

        return self.run(work())

    def wire(self, *, greeting: bool = True) -> Wire:
        wire = Wire(self.listener.port)
        self.wires.append(wire)
        if greeting:
            assert wire.until_status()[-1].startswith(b"OK")
        return wire

    def logged_in(self, address: str = USER) -> Wire:
        wire = self.wire()
        assert wire.login(address)[-1].startswith(b"OK"), "login failed"
        return wire


def start_rig(tmp_path: Path, **overrides: object) -> Iterator[SieveRig]:
    config = load_config(
        None,
        data_dir=str(tmp_path / "data"),
        **{"crypto.argon2.memory_kib": 19456, "sieve.max_script_size": 65536, **overrides},
    )
    loop, thread = start_loop_thread()

    async def setup() -> SieveRig:
        engine = create_engine(config.database_url)
        await upgrade(engine)
        async with engine.begin() as conn:
            await add_domain(conn, "example.org")
        throttle = LoginThrottle.from_config(config)
        watcher = CredentialWatcher(engine, poll_s=0.1)
        context = make_managesieve_context(
            config, engine=engine, throttle=throttle, watcher=watcher
        )
        listener = ManagesieveListener(context, "127.0.0.1", 0)
        await listener.start()
        return SieveRig(config, loop, engine, throttle, listener)

    rig = asyncio.run_coroutine_threadsafe(setup(), loop).result(60)
    rig.add_user(USER)
    rig.add_user(OTHER)
    try:
        yield rig
    finally:
        for wire in rig.wires:
            wire.close()
        asyncio.run_coroutine_threadsafe(rig.listener.stop(1.0), loop).result(30)
        watcher = rig.listener.context.watcher
        if watcher is not None:
            asyncio.run_coroutine_threadsafe(watcher.close(), loop).result(30)
        asyncio.run_coroutine_threadsafe(rig.engine.dispose(), loop).result(30)
        stop_loop_thread(loop, thread)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[SieveRig]:
    yield from start_rig(tmp_path)
