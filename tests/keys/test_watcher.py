"""The credential watcher: one query per poll for every watched user, and only the
sessions whose generation moved are told, in this process and in any other on the same
database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import delete, event
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.db import UserId, create_engine
from cryptmail.db import tables as t
from cryptmail.keys import CredentialWatcher, UnlockedAccounts, change_password
from cryptmail.keys._generation import bump_generation, read_generations
from keys.conftest import PASSWORD, MakeUser, pw

ALICE = "alice@example.org"
BOB = "bob@example.org"


class Calls:
    def __init__(self) -> None:
        self.names: list[str] = []

    def on(self, name: str) -> Callable[[], None]:
        return lambda: self.names.append(name)


async def test_a_bump_ends_the_watches_of_that_user_only(
    engine: AsyncEngine, make_user: MakeUser
) -> None:
    alice, bob = (await make_user(ALICE)).user.id, (await make_user(BOB)).user.id
    watcher = CredentialWatcher(engine, poll_s=3600)
    calls = Calls()
    idle = watcher.watch(alice, 0, calls.on("alice idle"))
    watcher.watch(alice, 0, calls.on("alice selected"))
    watcher.watch(bob, 0, calls.on("bob"))
    assert await watcher.check() == 0
    async with engine.begin() as conn:
        await bump_generation(conn, alice)
    assert await watcher.check() == 2
    assert sorted(calls.names) == ["alice idle", "alice selected"]
    assert idle.ended
    assert watcher.watched_users == 1  # bob's only: alice's watches are gone
    assert await watcher.check() == 0
    assert len(calls.names) == 2  # told once
    await watcher.close()


async def test_a_login_at_the_new_generation_is_not_ended(
    engine: AsyncEngine, make_user: MakeUser
) -> None:
    alice = (await make_user(ALICE)).user.id
    async with engine.begin() as conn:
        await bump_generation(conn, alice)
    watcher = CredentialWatcher(engine, poll_s=3600)
    calls = Calls()
    watcher.watch(alice, 1, calls.on("new"))
    watcher.watch(alice, 0, calls.on("old"))
    assert await watcher.check() == 1
    assert calls.names == ["old"]
    await watcher.close()


async def test_an_account_row_gone_ends_its_sessions(
    engine: AsyncEngine, make_user: MakeUser
) -> None:
    alice = (await make_user(ALICE)).user.id
    watcher = CredentialWatcher(engine, poll_s=3600)
    calls = Calls()
    watcher.watch(alice, 0, calls.on("alice"))
    async with engine.begin() as conn:
        for table in (t.cm_key_slots, t.cm_key_pairs, t.cm_data_keys, t.cm_accounts):
            await conn.execute(delete(table).where(table.c.user_id == alice))
    assert await watcher.check() == 1
    await watcher.close()


async def test_one_query_per_poll_however_many_sessions(
    engine: AsyncEngine, make_user: MakeUser
) -> None:
    users = [(await make_user(f"u{n}@example.org")).user.id for n in range(3)]
    watcher = CredentialWatcher(engine, poll_s=3600)
    for user_id in users:
        for _session in range(4):
            watcher.watch(user_id, 0, lambda: None)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        assert await watcher.check() == 0
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert "credential_generation" in statements[0] and " IN " in statements[0].upper()
    await watcher.close()


async def test_read_generations_chunks_long_lists(engine: AsyncEngine, make_user: MakeUser) -> None:
    alice = (await make_user(ALICE)).user.id
    ids = [UserId(n) for n in range(10_000, 11_200)] + [alice]
    async with engine.connect() as conn:
        assert await read_generations(conn, ids) == {alice: 0}


async def test_the_poll_task_runs_while_watched_and_stops_when_not(
    engine: AsyncEngine, make_user: MakeUser
) -> None:
    alice = (await make_user(ALICE)).user.id
    watcher = CredentialWatcher(engine, poll_s=0.05)
    ended = asyncio.Event()
    watcher.watch(alice, 0, ended.set)
    task = watcher._task
    assert task is not None and not task.done()
    async with engine.begin() as conn:
        await bump_generation(conn, alice)
    await asyncio.wait_for(ended.wait(), 5)
    await asyncio.wait_for(task, 5)  # nothing watched: no more queries
    # A later watch starts a new task.
    watcher.watch(alice, 1, lambda: None)
    assert watcher._task is not None and watcher._task is not task
    await watcher.close()
    assert watcher._task is None


async def test_a_failing_callback_does_not_keep_the_others_open(
    engine: AsyncEngine, make_user: MakeUser
) -> None:
    alice = (await make_user(ALICE)).user.id
    watcher = CredentialWatcher(engine, poll_s=3600)
    calls = Calls()

    def broken() -> None:
        raise RuntimeError("a session's bug")

    watcher.watch(alice, 0, broken)
    watcher.watch(alice, 0, calls.on("other"))
    async with engine.begin() as conn:
        await bump_generation(conn, alice)
    assert await watcher.check() == 2
    assert calls.names == ["other"]
    await watcher.close()


async def test_two_processes_on_one_database_both_end_their_sessions(
    db_path: Path, engine: AsyncEngine, make_user: MakeUser, crypto: CryptoConfig
) -> None:
    """Two `serve` processes: two engines on one SQLite file, a watcher each. A password
    changed through a third (the CLI) ends the sessions of both within the poll."""
    alice = (await make_user(ALICE)).user.id
    bob = (await make_user(BOB)).user.id
    node_b = create_engine(f"sqlite:///{db_path}")
    watchers = [CredentialWatcher(engine, poll_s=0.1), CredentialWatcher(node_b, poll_s=0.1)]
    ended = [asyncio.Event(), asyncio.Event()]
    bob_ended = asyncio.Event()
    for watcher, flag in zip(watchers, ended, strict=True):
        watcher.watch(alice, 0, flag.set)
    watchers[1].watch(bob, 0, bob_ended.set)
    cli = create_engine(f"sqlite:///{db_path}")
    try:
        await change_password(cli, ALICE, pw(PASSWORD), pw("a new password 2"), crypto)
        await asyncio.wait_for(asyncio.gather(*(flag.wait() for flag in ended)), 5)
        await asyncio.sleep(0.3)  # several more polls
        assert not bob_ended.is_set()
    finally:
        for watcher in watchers:
            await watcher.close()
        await node_b.dispose()
        await cli.dispose()


async def test_the_cache_gives_the_generation_and_forgets_an_ended_session(
    engine: AsyncEngine, make_user: MakeUser, crypto: CryptoConfig
) -> None:
    alice = (await make_user(ALICE)).user.id
    cache = UnlockedAccounts(engine, crypto, ttl_s=3600)
    account, generation = await cache.acquire_with_generation(ALICE, pw(PASSWORD))
    assert generation == 0
    second, again = await cache.acquire_with_generation(ALICE, pw(PASSWORD))  # from memory
    assert again == 0 and second is account
    async with engine.begin() as conn:
        await bump_generation(conn, alice)
    cache.release(account, ended_generation=0)
    cache.release(second, ended_generation=0)
    # Without `ended_generation` the idle entry (and its unlocked key) would stay an hour.
    assert cache.cached_accounts == 0
    _account, generation = await cache.acquire_with_generation(ALICE, pw(PASSWORD))
    assert generation == 1


async def test_an_ended_session_leaves_a_newer_login_cached(
    engine: AsyncEngine, make_user: MakeUser, crypto: CryptoConfig
) -> None:
    alice = (await make_user(ALICE)).user.id
    cache = UnlockedAccounts(engine, crypto, ttl_s=3600)
    old, _ = await cache.acquire_with_generation(ALICE, pw(PASSWORD))
    async with engine.begin() as conn:
        await bump_generation(conn, alice)
    new, generation = await cache.acquire_with_generation(ALICE, pw(PASSWORD))
    assert generation == 1
    cache.release(old, ended_generation=0)  # the old session ends late: no harm done
    cache.release(new)
    assert cache.cached_accounts == 1
