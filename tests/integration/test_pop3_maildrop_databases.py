"""POP3's QUIT on every database: sessions of one maildrop that deleted the same
messages commit at once, each expunging what is left, and the mailbox's counters end
at zero (no message counted off twice). Run again after a deadlock with another
session's expunge (`retry=True` of `expunge_messages`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sqlalchemy import func, select

from cryptmail.db import tables as t
from cryptmail.keys import unlock_account
from cryptmail.pop3 import Maildrop
from cryptmail.store import ChangeBus, deliver_message
from store.conftest import PASSWORD, StoreRig


async def _source(n: int) -> AsyncIterator[bytes]:
    yield b"Subject: %d\r\n\r\nbody\r\n" % n


async def test_parallel_quits_of_one_maildrop_expunge_once(store_rig: StoreRig) -> None:
    user = await store_rig.user("alice@example.org")
    account, _ = await unlock_account(
        store_rig.engine, user.email, PASSWORD, store_rig.config.crypto
    )
    bus = ChangeBus()
    for round_ in range(3):
        for n in range(6):
            await deliver_message(store_rig.engine, store_rig.blobs, user, _source(n))
        drops = [await Maildrop.load(store_rig.engine, store_rig.blobs, account) for _ in range(6)]
        for drop in drops:
            for entry in drop.entries:
                entry.deleted = True
        await asyncio.gather(*(drop.commit(bus) for drop in drops))
        mb, msg = t.cm_mailboxes, t.cm_messages
        async with store_rig.engine.connect() as conn:
            left = await conn.scalar(select(func.count()).select_from(msg))
            counters = (
                await conn.execute(
                    select(mb.c.message_count, mb.c.used_bytes).where(
                        mb.c.id == drops[0].mailbox_id
                    )
                )
            ).one()
        assert (left, tuple(counters)) == (0, (0, 0)), round_
