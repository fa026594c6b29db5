"""A live IMAP server on a free loopback port, over a fresh SQLite data dir."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config, load_config
from cryptmail.db import create_engine, upgrade
from cryptmail.imap.server._learning import SpamLearner
from cryptmail.imap.server._listener import ImapListener, make_context
from cryptmail.keys import LoginThrottle, create_user
from cryptmail.secret import Password
from cryptmail.store import ChangeBus, deliver_message, ensure_default_mailboxes
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import add_domain, get_user
from loop_thread import start_loop_thread, stop_loop_thread

PASSWORD = "p%ss \"word' 1"
UTF8_PASSWORD = "pä%ss \"wörd' ✓"
USER = "alice@example.org"


T = TypeVar("T")


@dataclass
class ImapRig:
    """Runs the server's event loop in a thread, so sync clients can talk to it."""

    config: Config
    loop: asyncio.AbstractEventLoop
    port: int
    bus: ChangeBus
    engine: AsyncEngine
    blobs: LocalBlobStore
    throttle: LoginThrottle
    learner: SpamLearner | None = None
    listener: ImapListener | None = None

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

    def add_user(self, email: str, password: str, crypt: int = 2) -> None:
        async def work() -> None:
            await create_user(
                self.engine, email, Password.from_str(password), self.config.crypto, crypt=crypt
            )
            async with self.engine.begin() as conn:
                user = await get_user(conn, email)
                await ensure_default_mailboxes(conn, user.id)

        self.run(work())


def start_rig(tmp_path: Path, **overrides: object) -> Iterator[ImapRig]:
    config = load_config(
        None, data_dir=str(tmp_path / "data"), **{"crypto.argon2.memory_kib": 19456}, **overrides
    )
    loop, thread = start_loop_thread()

    async def setup() -> tuple[ImapListener, AsyncEngine, LocalBlobStore]:
        engine = create_engine(config.database_url)
        await upgrade(engine)
        async with engine.begin() as conn:
            await add_domain(conn, "example.org")
        blobs = LocalBlobStore(config.blob_path)
        bus = ChangeBus()
        context = make_context(
            config, engine=engine, blobs=blobs, bus=bus, throttle=LoginThrottle.from_config(config)
        )
        listener = ImapListener(context, "127.0.0.1", 0, implicit_tls=False)
        await listener.start()
        return listener, engine, blobs

    listener, engine, blobs = asyncio.run_coroutine_threadsafe(setup(), loop).result(60)
    rig = ImapRig(
        config,
        loop,
        listener.port,
        listener.context.bus,
        engine,
        blobs,
        listener.context.throttle,
        listener.context.learner,
        listener,
    )
    rig.add_user(USER, PASSWORD)
    try:
        yield rig
    finally:
        asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(30)
        asyncio.run_coroutine_threadsafe(engine.dispose(), loop).result(30)
        stop_loop_thread(loop, thread)


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 120) -> None:
    """Poll what a background task (the index pass, a lease) makes true; `what` names
    it in the failure. Generous: it bounds a hang, it times nothing."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.05)


def rig_pair(tmp_path: Path, **fast: object) -> Iterator[tuple[ImapRig, ImapRig]]:
    """A reference server without the background pass (every key the slow way) and the
    server under test with the settings `fast`; both stopped after the test."""
    slow_iter = start_rig(tmp_path / "slow", **{"imap.fts_index": False})
    fast_iter = start_rig(tmp_path / "fast", **fast)
    slow, rig = next(slow_iter), next(fast_iter)
    try:
        yield slow, rig
    finally:
        for rest in (fast_iter, slow_iter):
            for _ in rest:
                pass
