"""The background pass's lease on a real database: one holder at a time, renewed by
its holder, taken over once it ran out, given up by its holder only, and the row holds
no plaintext (a sealed token and a time)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from cryptmail.db import tables as t
from cryptmail.db import utcnow
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.store.fulltext import drop_lease, lease_token, take_lease
from cryptmail.store.fulltext._lease import KIND

from ..conftest import PASSWORD, StoreRig


async def _account(rig: StoreRig) -> UnlockedAccount:
    user = await rig.user("alice@example.org")
    account, _ = await unlock_account(rig.engine, user.email, PASSWORD, rig.config.crypto)
    return account


async def _rows(rig: StoreRig) -> list[tuple[str, bytes]]:
    jobs = t.cm_jobs
    async with rig.engine.connect() as conn:
        found = await conn.execute(select(jobs.c.kind, jobs.c.state_sealed))
        return [(str(kind), bytes(state)) for kind, state in found]


async def test_one_holder_at_a_time_until_it_gives_up(rig: StoreRig) -> None:
    account = await _account(rig)
    user_id = account.user.id
    first, second = lease_token(account), lease_token(account)
    assert first != second
    assert await take_lease(rig.engine, user_id, first, 60)
    assert not await take_lease(rig.engine, user_id, second, 60)
    assert await take_lease(rig.engine, user_id, first, 60)  # its holder renews it
    await drop_lease(rig.engine, user_id, second)  # not the holder: nothing happens
    assert not await take_lease(rig.engine, user_id, second, 60)
    await drop_lease(rig.engine, user_id, first)
    assert await _rows(rig) == []
    assert await take_lease(rig.engine, user_id, second, 60)
    assert await _rows(rig) == [(KIND, second)]


async def test_a_lease_that_ran_out_is_taken_over(rig: StoreRig) -> None:
    account = await _account(rig)
    user_id = account.user.id
    dead, alive = lease_token(account), lease_token(account)
    assert await take_lease(rig.engine, user_id, dead, 60)
    jobs = t.cm_jobs
    async with rig.engine.begin() as conn:  # its process died: the lease ran out
        row = (await conn.execute(select(jobs.c.id, jobs.c.updated_at))).one()
        await conn.execute(
            update(jobs)
            .where(jobs.c.id == row.id)
            .values(updated_at=row.updated_at - timedelta(hours=1))
        )
    assert await take_lease(rig.engine, user_id, alive, 60)
    assert not await take_lease(rig.engine, user_id, dead, 60)  # back: it has lost it
    assert await _rows(rig) == [(KIND, alive)]


async def test_two_first_rows_leave_one_holder(rig: StoreRig) -> None:
    """Two processes that inserted the first row at once (no row to lock yet)."""
    account = await _account(rig)
    user_id = account.user.id
    a, b = lease_token(account), lease_token(account)
    assert await take_lease(rig.engine, user_id, a, 60)
    async with rig.engine.begin() as conn:
        await conn.execute(
            t.cm_jobs.insert().values(
                user_id=user_id, kind=KIND, state_sealed=b, updated_at=utcnow()
            )
        )
    assert await take_lease(rig.engine, user_id, a, 60)  # the lower id wins
    assert not await take_lease(rig.engine, user_id, b, 60)
    assert await _rows(rig) == [(KIND, a)]
