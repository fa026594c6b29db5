"""The change feed (poll mode, on one SQLite file shared by two engines as two processes
would): every kind of change made through the other engine reaches this node's bus or
credential watcher, once; a feed that missed pruned changes wakes everyone instead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import EventsConfig
from cryptmail.db import (
    Change,
    ChangeKind,
    create_engine,
    prune_changes,
    record_user_change,
    run_transaction,
    upgrade,
)
from cryptmail.db import tables as t
from cryptmail.keys import CredentialWatcher, change_password, create_user, unlock_account
from cryptmail.secret import Password
from cryptmail.serve._events import ChangeFeed, dispatch_to, feed_mode
from cryptmail.store import (
    ChangeBus,
    MailboxId,
    change_flags,
    create_mailbox,
    deliver_message,
    expunge_messages,
    load_messages,
)
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import User, add_domain, get_user
from serve.conftest import CRYPTO

PASSWORD = "correct horse battery"
EMAIL = "alice@example.org"


@dataclass
class Nodes:
    here: AsyncEngine
    """The feed's node."""
    there: AsyncEngine
    """Another process on the same database: the CLI, another node."""
    blobs: LocalBlobStore
    user: User


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    url = f"sqlite:///{tmp_path / 'cryptmail.db'}"
    here, there = create_engine(url), create_engine(url)
    await upgrade(there)
    async with there.begin() as conn:
        await add_domain(conn, "example.org")
    await create_user(there, EMAIL, Password.from_str(PASSWORD), CRYPTO, crypt=2)
    async with there.begin() as conn:
        user = await get_user(conn, EMAIL)
    yield Nodes(here, there, LocalBlobStore(tmp_path / "blobs"), user)
    await here.dispose()
    await there.dispose()


async def _one_message() -> AsyncIterator[bytes]:
    yield b"From: s@example.net\r\nSubject: x\r\n\r\nbody\r\n"


class Running:
    def __init__(self, feed: ChangeFeed) -> None:
        self.feed = feed
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(feed.run(self.stop))

    async def started(self) -> None:
        async with asyncio.timeout(30):
            await self.feed.started.wait()

    async def close(self) -> None:
        self.stop.set()
        await self.task


def _feed(engine: AsyncEngine, on_change: Callable[[Change], None], lost: list[int]) -> ChangeFeed:
    return ChangeFeed(engine, EventsConfig(poll_interval_ms=20), on_change, lambda: lost.append(1))


async def test_every_kind_of_change_elsewhere_reaches_this_node(nodes: Nodes) -> None:
    seen: list[Change] = []
    running = Running(_feed(nodes.here, seen.append, []))
    await running.started()
    assert running.feed.mode == "poll"
    try:
        appended = await deliver_message(nodes.there, nodes.blobs, nodes.user, _one_message())
        account, _slot = await unlock_account(
            nodes.there, EMAIL, Password.from_str(PASSWORD), CRYPTO
        )
        async with nodes.there.connect() as conn:
            rows = await load_messages(conn, account, appended.mailbox_id)
        await change_flags(
            nodes.there, account, appended.mailbox_id, [rows[0].id], "add", frozenset({"\\Seen"})
        )
        await expunge_messages(nodes.there, appended.mailbox_id, rows)
        async with nodes.there.begin() as conn:
            await create_mailbox(conn, account, "Projects")
        await change_password(
            nodes.there,
            EMAIL,
            Password.from_str(PASSWORD),
            Password.from_str("new pw 1234"),
            CRYPTO,
        )
        wanted = [
            ChangeKind.NEW,
            ChangeKind.FLAGS,
            ChangeKind.EXPUNGE,
            ChangeKind.MAILBOXES,
            ChangeKind.CREDENTIALS,
        ]
        async with asyncio.timeout(30):
            while [c.kind for c in seen] != wanted:
                assert len(seen) <= len(wanted), seen
                await asyncio.sleep(0.02)
    finally:
        await running.close()
    assert {c.user_id for c in seen} == {nodes.user.id}
    assert [c.mailbox_id for c in seen[:3]] == [appended.mailbox_id] * 3
    assert running.feed.delivered == 5


async def test_the_bus_and_the_watcher_hear_of_them(nodes: Nodes) -> None:
    bus = ChangeBus()
    watcher = CredentialWatcher(nodes.here, poll_s=3600)  # the poll never runs here
    ended = asyncio.Event()
    async with nodes.here.connect() as conn:
        generation = (
            await conn.execute(
                select(t.cm_accounts.c.credential_generation).where(
                    t.cm_accounts.c.user_id == nodes.user.id
                )
            )
        ).scalar_one()
    watcher.watch(nodes.user.id, int(generation), ended.set)
    queue = bus.subscribe(nodes.user.id)
    running = Running(_feed(nodes.here, dispatch_to(bus, watcher), []))
    await running.started()
    try:
        appended = await deliver_message(nodes.there, nodes.blobs, nodes.user, _one_message())
        async with asyncio.timeout(30):
            assert await queue.get() == appended.mailbox_id
        await change_password(
            nodes.there,
            EMAIL,
            Password.from_str(PASSWORD),
            Password.from_str("new pw 1234"),
            CRYPTO,
        )
        async with asyncio.timeout(30):
            await ended.wait()
    finally:
        await running.close()
        await watcher.close()
    assert ended.is_set()


async def test_changes_pruned_before_they_were_read_wake_everyone(nodes: Nodes) -> None:
    lost: list[int] = []
    seen: list[Change] = []
    feed = _feed(nodes.here, seen.append, lost)
    running = Running(feed)
    await running.started()
    await running.close()  # the node is cut off from here on
    for _ in range(3):
        await run_transaction(
            nodes.there, lambda c: record_user_change(c, nodes.user.id, ChangeKind.NEW, 1)
        )
    await run_transaction(nodes.there, lambda c: prune_changes(c, below=0, keep_rows=1))
    assert await feed.catch_up(after_outage=True) == 1
    assert lost == [1] and len(seen) == 1
    bus = ChangeBus()
    queue = bus.subscribe(nodes.user.id)
    bus.wake_all()
    assert queue.get_nowait() == MailboxId(0)


def test_auto_is_notify_on_postgresql_and_poll_elsewhere() -> None:
    auto = EventsConfig()
    assert feed_mode(auto, "postgresql") == "notify"
    assert feed_mode(auto, "mysql") == "poll" and feed_mode(auto, "sqlite") == "poll"
    assert feed_mode(EventsConfig(mode="notify"), "mysql") == "poll"
    assert feed_mode(EventsConfig(mode="off"), "postgresql") == "off"
