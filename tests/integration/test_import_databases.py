"""An import's UID reservation on every database, against a delivery into the same
folder: `reserve_uids` gives a folder Dovecot's UIDVALIDITY and UIDs only while it is
empty, and a delivery that commits while the import looks must count as a message."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

from sqlalchemy import select, update

from cryptmail import store
from cryptmail.crypto.dovecot import Uidlist
from cryptmail.db import tables as t
from cryptmail.keys import unlock_account
from cryptmail.store._append import insert_row
from cryptmail.store._import import prepare_folder
from store.conftest import PASSWORD, StoreRig


async def _source() -> AsyncIterator[bytes]:
    yield b"Subject: hi\r\n\r\nbody\r\n"


async def test_a_delivery_committed_while_uids_are_reserved_keeps_the_folder(
    store_rig: StoreRig,
) -> None:
    # Before the fix the import counted the folder's messages without the folder row's
    # lock: a delivery in flight was not counted, and the folder took Dovecot's
    # UIDVALIDITY with a message in it (on MariaDB also without that message's UID in
    # `taken`, so the import would reuse it).
    user = await store_rig.user("alice@example.org")
    account, _ = await unlock_account(
        store_rig.engine, user.email, PASSWORD, store_rig.config.crypto
    )
    appended = await store.deliver_message(store_rig.engine, store_rig.blobs, user, _source())
    assert appended.blob is not None
    async with store_rig.engine.begin() as conn:
        old = await store.create_mailbox(conn, account, "Old")
    uidlist = Uidlist(version=3, uid_validity=1234567, next_uid=10, mailbox_guid=None, records=())
    mb = t.cm_mailboxes
    async with store_rig.engine.begin() as conn:
        # A delivery into Old, as `insert_row` makes it: the folder row's lock first.
        await conn.execute(update(mb).where(mb.c.id == old.id).values(uidnext=mb.c.uidnext))
        await insert_row(conn, old.id, appended.blob, dt.datetime(2026, 1, 1))
        preparing = asyncio.ensure_future(prepare_folder(store_rig.engine, account, "Old", uidlist))
        await asyncio.sleep(0.5)
    state = await preparing
    async with store_rig.engine.connect() as conn:
        uidvalidity = await conn.scalar(select(mb.c.uidvalidity).where(mb.c.id == old.id))
    assert (state.reserved_below, uidvalidity) == (0, old.uidvalidity)
