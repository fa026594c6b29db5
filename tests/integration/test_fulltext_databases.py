"""The search index's rows on SQLite, MariaDB and PostgreSQL: segments written by one
session and read by another, the merge's compare-and-delete, a damaged segment dropped,
a segment as large as a merge makes (MEDIUMBLOB and max_allowed_packet on MariaDB), and
the background pass's lease (one holder, taken over when it ran out)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from sqlalchemy import update

from cryptmail.db import tables as t
from cryptmail.db import utcnow
from cryptmail.keys import unlock_account
from cryptmail.store.fulltext import lease_token, take_lease
from store.conftest import PASSWORD, StoreRig
from store.fulltext import test_index, test_lease

CASES: list[Callable[[StoreRig], Awaitable[None]]] = [
    test_index.test_a_second_session_sees_the_first_ones_segments,
    test_index.test_compact_merges_and_drops_expunged_blobs,
    test_index.test_a_merge_that_lost_the_race_writes_nothing,
    test_index.test_a_damaged_segment_is_dropped_never_used,
    test_index.test_a_full_size_merged_segment_is_stored_and_read_back,
    test_lease.test_one_holder_at_a_time_until_it_gives_up,
    test_lease.test_a_lease_that_ran_out_is_taken_over,
    test_lease.test_two_first_rows_leave_one_holder,
]


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__.removeprefix("test_"))
async def test_fulltext_rows(
    store_rig: StoreRig, case: Callable[[StoreRig], Awaitable[None]]
) -> None:
    await case(store_rig)


async def test_one_of_parallel_takeovers_wins(store_rig: StoreRig) -> None:
    # Eight passes find the lease run out at once: the update's condition on the expiry
    # they read lets one of them take it, on every database.
    user = await store_rig.user("alice@example.org")
    account, _ = await unlock_account(
        store_rig.engine, user.email, PASSWORD, store_rig.config.crypto
    )
    assert await take_lease(store_rig.engine, user.id, lease_token(account), 60)
    jobs = t.cm_jobs
    for round_ in range(5):
        async with store_rig.engine.begin() as conn:
            await conn.execute(update(jobs).values(updated_at=utcnow() - timedelta(seconds=1)))
        tokens = [lease_token(account) for _ in range(8)]
        won = await asyncio.gather(
            *(take_lease(store_rig.engine, user.id, token, 60) for token in tokens)
        )
        assert won.count(True) == 1, (round_, won)
        winner = tokens[won.index(True)]
        assert await take_lease(store_rig.engine, user.id, winner, 60), round_
