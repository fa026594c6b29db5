"""A live POP3 listener (and an IMAP one beside it, sharing accounts, throttle and change
bus as under `serve`) on loopback, its event loop in a thread so that the stdlib's
poplib and imaplib can talk to it."""

from __future__ import annotations

import asyncio
import poplib
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config, load_config
from cryptmail.db import create_engine, upgrade
from cryptmail.imap import ImapListener, make_context
from cryptmail.keys import LoginThrottle, UnlockedAccounts, create_user
from cryptmail.pop3 import Pop3Listener, make_pop3_context
from cryptmail.secret import Password
from cryptmail.store import ChangeBus, deliver_message, ensure_default_mailboxes
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import add_domain, get_user
from loop_thread import start_loop_thread, stop_loop_thread

PASSWORD = "p%ss word' 1"
USER = "alice@example.org"
OTHER = "bob@example.org"

T = TypeVar("T")


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


@dataclass
class Pop3Rig:
    config: Config
    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine
    blobs: LocalBlobStore
    bus: ChangeBus
    throttle: LoginThrottle
    pop3: Pop3Listener
    pop3s: Pop3Listener
    imap: ImapListener
    opened: list[Closable] = field(default_factory=list)
    """Every client connection the tests opened: closed when the rig stops."""

    def keep(self, opened: C) -> C:
        self.opened.append(opened)
        return opened

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def deliver(self, message: bytes, email: str = USER) -> None:
        async def work() -> None:
            async with self.engine.connect() as conn:
                user = await get_user(conn, email)

            async def source() -> AsyncIterator[bytes]:
                yield message

            await deliver_message(self.engine, self.blobs, user, source(), bus=self.bus)

        self.run(work())

    def add_user(self, email: str, password: str = PASSWORD) -> None:
        async def work() -> None:
            await create_user(self.engine, email, Password.from_str(password), self.config.crypto)
            async with self.engine.begin() as conn:
                user = await get_user(conn, email)
                await ensure_default_mailboxes(conn, user.id)

        self.run(work())

    def client(self) -> poplib.POP3:
        return self.keep(poplib.POP3("127.0.0.1", self.pop3.port, timeout=30))

    def login(self, email: str = USER, password: str = PASSWORD) -> poplib.POP3:
        pop = self.client()
        pop.user(email)
        pop.pass_(password)
        return pop

    def blob_count(self) -> int:
        async def count() -> int:
            return len([b async for b in self.blobs.list_ids()])

        return self.run(count())


def start_rig(tmp_path: Path, **overrides: object) -> Iterator[Pop3Rig]:
    config = load_config(
        None, data_dir=str(tmp_path / "data"), **{"crypto.argon2.memory_kib": 19456}, **overrides
    )
    loop, thread = start_loop_thread()

    async def setup() -> Pop3Rig:
        engine = create_engine(config.database_url)
        await upgrade(engine)
        async with engine.begin() as conn:
            await add_domain(conn, "example.org")
        blobs = LocalBlobStore(config.blob_path)
        bus = ChangeBus()
        throttle = LoginThrottle.from_config(config)
        accounts = UnlockedAccounts.from_config(engine, config)
        shared: dict[str, Any] = {
            "engine": engine, "blobs": blobs, "bus": bus, "throttle": throttle,
            "accounts": accounts,
        }  # fmt: skip
        context = make_pop3_context(config, **shared)
        pop3 = Pop3Listener(context, "127.0.0.1", 0, implicit_tls=False)
        pop3s = Pop3Listener(context, "127.0.0.1", 0, implicit_tls=True)
        imap = ImapListener(make_context(config, **shared), "127.0.0.1", 0, implicit_tls=False)
        for listener in (pop3, pop3s, imap):
            await listener.start()
        return Pop3Rig(config, loop, engine, blobs, bus, throttle, pop3, pop3s, imap)

    rig = asyncio.run_coroutine_threadsafe(setup(), loop).result(60)
    rig.add_user(USER)
    try:
        yield rig
    finally:
        for opened in rig.opened:
            opened.close()
        for listener in (rig.pop3, rig.pop3s, rig.imap):
            asyncio.run_coroutine_threadsafe(listener.stop(1.0), loop).result(30)
        asyncio.run_coroutine_threadsafe(rig.engine.dispose(), loop).result(30)
        stop_loop_thread(loop, thread)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Pop3Rig]:
    yield from start_rig(tmp_path)
