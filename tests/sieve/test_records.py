"""cm_sieve_records: keyed hashes with an expiry, one vacation reply per claim."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.db import UserId, create_engine, upgrade, utcnow
from cryptmail.db import tables as t
from cryptmail.sieve import (
    claim_record,
    duplicate_record,
    expire_records,
    note_record,
    seen_record,
    vacation_record,
)
from cryptmail.users import add_domain, add_user


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await upgrade(engine)
    yield engine
    await engine.dispose()


async def _user(engine: AsyncEngine) -> UserId:
    async with engine.begin() as conn:
        await add_domain(conn, "example.org")
        user = await add_user(conn, "bob@example.org", "{PLAIN}x")
    return user.id


def test_records_are_keyed_per_user_and_kind() -> None:
    a = vacation_record(UserId(1), "Alice@Example.net", "h")
    assert a == vacation_record(UserId(1), "alice@example.net", "h")
    assert a != vacation_record(UserId(2), "alice@example.net", "h")
    assert a != duplicate_record(UserId(1), "alice@example.net", "h")
    assert b"alice" not in a and len(a) == 32


async def test_one_claim_wins_among_parallel_deliveries(engine: AsyncEngine) -> None:
    user = await _user(engine)
    record = vacation_record(user, "a@example.net", "h")
    won = await asyncio.gather(*(claim_record(engine, user, record, 60) for _ in range(8)))
    assert sum(won) == 1
    assert await seen_record(engine, user, record)


async def test_expired_records_are_not_seen_and_are_deleted(engine: AsyncEngine) -> None:
    user = await _user(engine)
    record = duplicate_record(user, "", "<1@x>")
    await note_record(engine, user, record, 60)
    async with engine.begin() as conn:
        await conn.execute(update(t.cm_sieve_records).values(expires_at=utcnow()))
    assert not await seen_record(engine, user, record)
    assert await claim_record(engine, user, record, 60)  # an expired one starts again
    async with engine.begin() as conn:
        await conn.execute(update(t.cm_sieve_records).values(expires_at=utcnow()))
    assert await expire_records(engine) == 1
    async with engine.connect() as conn:
        assert (await conn.execute(select(t.cm_sieve_records))).first() is None
