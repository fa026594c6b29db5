"""Sieve's records (vacation's "answered already", duplicate, redirect) on every database:
eight deliveries claiming one record at once send one vacation reply. On MariaDB their
delete-then-insert can deadlock; the victim runs again (`retry=True`) and, finding the
winner's record live, loses the claim instead of failing the delivery."""

from __future__ import annotations

import asyncio

from cryptmail.sieve import claim_record, note_record, seen_record, vacation_record
from cryptmail.users import add_user
from store.conftest import StoreRig


async def test_one_of_many_parallel_claims_wins_on_every_database(store_rig: StoreRig) -> None:
    async with store_rig.engine.begin() as conn:
        user = (await add_user(conn, "bob@example.org", "{PLAIN}x")).id
    for round_ in range(5):
        record = vacation_record(user, f"sender{round_}@example.net", "handle")
        won = await asyncio.gather(
            *(claim_record(store_rig.engine, user, record, 60) for _ in range(8))
        )
        assert won.count(True) == 1, (round_, won)
        assert await seen_record(store_rig.engine, user, record)


async def test_parallel_notes_of_one_record_leave_it_live(store_rig: StoreRig) -> None:
    async with store_rig.engine.begin() as conn:
        user = (await add_user(conn, "bob@example.org", "{PLAIN}x")).id
    record = vacation_record(user, "sender@example.net", "handle")
    await asyncio.gather(
        *(note_record(store_rig.engine, user, record, 60, extend=True) for _ in range(8))
    )
    assert await seen_record(store_rig.engine, user, record)
