"""A SASL server on loopback over a migrated SQLite database with two users, and a
client that speaks the auth protocol as Postfix does."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Argon2Config, CryptoConfig
from cryptmail.db import create_engine, upgrade
from cryptmail.keys import LoginThrottle, create_user
from cryptmail.sasl import SaslChecker, SaslServer
from cryptmail.secret import Password
from cryptmail.users import add_domain

PASSWORD = "correct horse battery staple"
CRYPTO = CryptoConfig(argon2=Argon2Config(memory_kib=19456, time_cost=2))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def plain(address: str, password: str) -> str:
    return b64(b"\x00" + address.encode() + b"\x00" + password.encode())


@dataclass
class Client:
    """One client connection, as Postfix's smtpd holds one."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    greeting: list[str] = field(default_factory=list)

    @classmethod
    async def connect(cls, port: int, *, handshake: bool = True) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        if handshake:
            writer.write(b"VERSION\t1\t0\nCPID\t4242\n")
            while (line := await client.read()) != "DONE":
                client.greeting.append(line)
        return client

    async def read(self) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), 30)
        return raw.decode().rstrip("\n")

    async def send(self, text: str) -> None:
        self.writer.write(text.encode() + b"\n")
        await self.writer.drain()

    async def auth(self, request_id: int, mechanism: str, *extra: str) -> str:
        params = "\t".join(("service=smtp", "nologin", "lip=127.0.0.1", "rip=192.0.2.7", *extra))
        await self.send(f"AUTH\t{request_id}\t{mechanism}\t{params}")
        return await self.read()

    async def closed(self) -> bool:
        """Whether the server closes the connection (reading what it sent until then)."""
        await asyncio.wait_for(self.reader.read(), 30)
        ended = self.reader.at_eof()
        await self.close()  # our side too, as a client does when the server hangs up
        return ended

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@dataclass
class Rig:
    engine: AsyncEngine
    throttle: LoginThrottle
    server: SaslServer

    async def client(self) -> Client:
        return await Client.connect(self.server.port)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'cryptmail.db'}")
    await upgrade(engine)
    async with engine.begin() as conn:
        await add_domain(conn, "example.org")
    for email in ("alice@example.org", "bob@example.org"):
        await create_user(engine, email, Password.from_str(PASSWORD), CRYPTO)
    yield engine
    await engine.dispose()


@pytest.fixture
async def rig(engine: AsyncEngine) -> AsyncIterator[Rig]:
    throttle = LoginThrottle(address_burst=3, client_burst=50)
    server = SaslServer(SaslChecker(engine, CRYPTO, throttle), "127.0.0.1:0")
    await server.start()
    yield Rig(engine, throttle, server)
    await server.stop(1.0)
