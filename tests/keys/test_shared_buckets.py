"""The throttle's failure buckets shared in the database: failures on one node count on
every node, the table holds no address, and full buckets are pruned."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import load_config
from cryptmail.db import tables as t
from cryptmail.errors import AuthenticationFailed, TooManyAttempts
from cryptmail.keys import LoginThrottle
from cryptmail.keys._shared_buckets import SharedBuckets
from hand_clock import HandClock

ADDRESS = "alice@example.org"
CLIENT = "198.51.100.23"


def _node(engine: AsyncEngine, clock: HandClock) -> LoginThrottle:
    shared = SharedBuckets(engine, b"k" * 32, clock=clock)
    return LoginThrottle(address_burst=5, address_refill_s=20, clock=clock, shared=shared)


async def _wrong(throttle: LoginThrottle, address: str = ADDRESS) -> None:
    async def attempt() -> None:
        raise AuthenticationFailed("wrong password")

    with pytest.raises(AuthenticationFailed):
        await throttle.check(address, CLIENT, attempt)


async def _right(throttle: LoginThrottle) -> str:
    async def attempt() -> str:
        return "unlocked"

    return await throttle.check(ADDRESS, CLIENT, attempt)


async def test_failures_on_two_nodes_add_up(engine: AsyncEngine) -> None:
    clock = HandClock(1_000_000.0)
    node_a, node_b = _node(engine, clock), _node(engine, clock)
    for _ in range(3):
        await _wrong(node_a)
    for _ in range(2):
        await _wrong(node_b)
    for node in (node_a, node_b):
        with pytest.raises(TooManyAttempts):
            await _right(node)
    # A third node that saw nothing is refused too; one refill later one try is back.
    node_c = _node(engine, clock)
    with pytest.raises(TooManyAttempts):
        await _right(node_c)
    clock.now += 20
    assert await _right(node_c) == "unlocked"
    # Another address is untouched by all of it.
    assert node_a.debt("bob@example.org", "203.0.113.9") == 0


async def test_the_table_names_no_address_and_prunes_full_buckets(engine: AsyncEngine) -> None:
    clock = HandClock(1_000_000.0)
    node = _node(engine, clock)
    await _wrong(node)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(t.cm_login_failures))).all()
    assert len(rows) == 2  # the address's bucket and the client's
    dump = b"".join(bytes(r.key_hash) for r in rows)
    assert ADDRESS.encode() not in dump and CLIENT.encode() not in dump
    assert await node.prune_shared() == 0
    clock.now += 21  # both buckets are full again
    assert await node.prune_shared() == 2


async def test_shared_only_off_sqlite_unless_asked(engine: AsyncEngine) -> None:
    # The hash key comes from the server key tests/conftest.py installs for the session.
    assert not LoginThrottle.from_config(load_config(None), engine).shared
    forced = load_config(None, **{"auth.shared_buckets": "database"})
    assert LoginThrottle.from_config(forced, engine).shared
    assert not LoginThrottle.from_config(forced).shared  # no engine, nothing to share
