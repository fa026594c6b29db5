"""Message rows: sealed flags and cache, modseqs, copy, expunge and unreferenced blobs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from sqlalchemy import select

from cryptmail import store
from cryptmail.db import tables as t
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.store import MessageCache, MessageId, MessageRow, UserId
from cryptmail.users import get_user

from .conftest import PASSWORD, StoreRig

FLAG = "$Kennwort-7d21"


async def _source(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _setup(rig: StoreRig, count: int = 3) -> tuple[UnlockedAccount, list[MessageRow]]:
    user = await rig.user("alice@example.org")
    for i in range(count):
        body = b"Subject: %d\r\n\r\n" % i + os.urandom(100)
        await store.deliver_message(rig.engine, rig.blobs, user, _source(body))
    account, _ = await unlock_account(rig.engine, user.email, PASSWORD, rig.config.crypto)
    return account, await _rows(rig, account)


async def _rows(rig: StoreRig, account: UnlockedAccount, box: str = "INBOX") -> list[MessageRow]:
    async with rig.engine.connect() as conn:
        mailbox = await store.get_mailbox(conn, account, box)
        return await store.load_messages(conn, account, mailbox.id)


async def test_new_rows_have_no_flags_until_indexed(rig: StoreRig) -> None:
    account, rows = await _setup(rig)
    assert [r.uid for r in rows] == [1, 2, 3]
    assert all(r.flags == frozenset() and not r.indexed for r in rows)
    async with rig.engine.begin() as conn:
        counts = await store.mailbox_counts(conn, rows[0].mailbox_id)
        assert counts == (3, 3)
        await store.save_cache(conn, account, rows[0], MessageCache(size=10, message_key=None))
        counts = await store.mailbox_counts(conn, rows[0].mailbox_id)
    assert counts == (3, 2)
    first = (await _rows(rig, account))[0]
    assert first.indexed
    assert first.flags == {store.RECENT_FLAG}
    assert first.modseq == rows[0].modseq  # caching changes no modseq


async def test_claiming_gives_first_flags_without_a_modseq_and_never_overwrites(
    rig: StoreRig,
) -> None:
    account, rows = await _setup(rig)
    assert not any(r.claimed for r in rows)
    async with rig.engine.begin() as conn:  # another session stored flags first
        await store.set_flags(
            conn, account, rows[0].mailbox_id, {rows[0].id: frozenset({"\\Seen"})}
        )
    await store.claim_messages(rig.engine, account, rows, frozenset({store.RECENT_FLAG}))
    claimed = await _rows(rig, account)
    assert all(r.claimed and not r.indexed for r in claimed)
    assert claimed[0].flags == {"\\Seen"}  # the earlier flags won
    assert [r.flags for r in claimed[1:]] == [{store.RECENT_FLAG}] * 2
    assert [r.modseq for r in claimed[1:]] == [r.modseq for r in rows[1:]]
    async with rig.engine.connect() as conn:
        assert await store.mailbox_counts(conn, rows[0].mailbox_id) == (3, 0)
    # A claimed row's cache is saved without touching its flags.
    await store.save_caches(
        rig.engine, account, [(claimed[1], MessageCache(size=5, message_key=None))]
    )
    again = await _rows(rig, account)
    assert again[1].indexed and again[1].flags == {store.RECENT_FLAG}


async def test_flags_are_sealed_and_padded(rig: StoreRig) -> None:
    account, rows = await _setup(rig, 2)
    async with rig.engine.begin() as conn:
        await store.set_flags(
            conn,
            account,
            rows[0].mailbox_id,
            {rows[0].id: frozenset({FLAG, "\\Seen"}), rows[1].id: frozenset()},
        )
        sealed = (
            (await conn.execute(select(t.cm_messages.c.flags_sealed).order_by(t.cm_messages.c.id)))
            .scalars()
            .all()
        )
    assert all(FLAG.encode() not in s and b"Seen" not in s for s in sealed)
    # Padding: both flag sets fit in 32 bytes, so the sealed values are equally long.
    assert len(sealed[0]) == len(sealed[1])
    fresh = await _rows(rig, account)
    assert fresh[0].flags == {FLAG, "\\Seen"}
    assert fresh[1].flags == frozenset()


async def test_set_flags_bumps_modseq(rig: StoreRig) -> None:
    account, rows = await _setup(rig)
    mailbox = rows[0].mailbox_id
    async with rig.engine.begin() as conn:
        before = await store.mailbox_by_id(conn, account, mailbox)
        modseq = await store.set_flags(conn, account, mailbox, {rows[1].id: frozenset({"\\Seen"})})
        after = await store.mailbox_by_id(conn, account, mailbox)
        assert await store.set_flags(conn, account, mailbox, {}) == 0
    assert modseq == before.highest_modseq + 1 == after.highest_modseq
    changed = await _rows(rig, account)
    assert [r.modseq == modseq for r in changed] == [False, True, False]
    async with rig.engine.connect() as conn:
        since = await store.load_messages(conn, account, mailbox, since_modseq=modseq - 1)
    assert [r.uid for r in since] == [2]


async def test_save_and_load_cache(rig: StoreRig) -> None:
    account, rows = await _setup(rig, 1)
    cache = MessageCache(size=1234, message_key=os.urandom(32), extra=b"envelope bytes")
    async with rig.engine.begin() as conn:
        assert await store.load_cache(conn, account, rows[0].id) is None
        await store.save_cache(conn, account, rows[0], cache)
        assert await store.load_cache(conn, account, rows[0].id) == cache
        assert await store.load_cache(conn, account, MessageId(999)) is None
        raw = (await conn.execute(select(t.cm_messages.c.cache_sealed))).scalar_one()
    assert b"envelope bytes" not in raw
    assert cache.message_key is not None and cache.message_key not in raw


async def test_copy_shares_the_blob_and_reseals(rig: StoreRig) -> None:
    account, rows = await _setup(rig, 2)
    cache = MessageCache(size=5, message_key=None, extra=b"x")
    async with rig.engine.begin() as conn:
        await store.save_cache(conn, account, rows[0], cache)
        await store.set_flags(conn, account, rows[0].mailbox_id, {rows[0].id: frozenset({FLAG})})
        archive = await store.get_mailbox(conn, account, "Archive")
    rows = await _rows(rig, account)
    async with rig.engine.begin() as conn:
        pairs = await store.copy_messages(conn, account, rows, archive.id)
    assert pairs == [(1, 1), (2, 2)]
    copies = await _rows(rig, account, "Archive")
    assert [c.blob_id for c in copies] == [r.blob_id for r in rows]
    assert copies[0].flags == {FLAG, store.RECENT_FLAG}
    assert copies[1].flags == {store.RECENT_FLAG}
    async with rig.engine.connect() as conn:
        assert await store.load_cache(conn, account, copies[0].id) == cache
        assert await store.load_cache(conn, account, copies[1].id) is None
        result = await conn.execute(select(t.cm_messages.c.id, t.cm_messages.c.flags_sealed))
        sealed = {row.id: row.flags_sealed for row in result}
    # Resealed under the new row id, not copied bytes.
    assert sealed[copies[0].id] != sealed[rows[0].id]
    assert len([b async for b in rig.blobs.list_ids()]) == 2


async def test_copy_takes_the_flags_as_stored_not_the_sessions_copy(rig: StoreRig) -> None:
    """Another session stored a flag after this one loaded the row: the copy has it."""
    account, _ = await _setup(rig, 1)
    async with rig.engine.begin() as conn:
        archive = await store.get_mailbox(conn, account, "Archive")
    stale = await _rows(rig, account)
    await store.change_flags(
        rig.engine, account, stale[0].mailbox_id, [stale[0].id], "add", frozenset({FLAG})
    )
    assert FLAG not in stale[0].flags
    async with rig.engine.begin() as conn:
        await store.copy_messages(conn, account, stale, archive.id)
    (copy,) = await _rows(rig, account, "Archive")
    assert copy.flags == {FLAG, store.RECENT_FLAG}


async def test_expunge_vanished_and_unreferenced_blobs(rig: StoreRig) -> None:
    account, rows = await _setup(rig, 3)
    async with rig.engine.begin() as conn:
        archive = await store.get_mailbox(conn, account, "Archive")
        await store.copy_messages(conn, account, rows[:1], archive.id)
    mailbox = rows[0].mailbox_id
    async with rig.engine.begin() as conn:
        before = (await store.mailbox_by_id(conn, account, mailbox)).highest_modseq
        modseq, blob_ids = await store.expunge(conn, mailbox, rows[:2])
        assert await store.expunge(conn, mailbox, []) == (0, [])
    assert modseq == before + 1
    assert blob_ids == [rows[0].blob_id, rows[1].blob_id]
    async with rig.engine.connect() as conn:
        assert await store.vanished_since(conn, mailbox, before) == [1, 2]
        assert await store.vanished_since(conn, mailbox, modseq) == []
        # The first blob is still named by its copy in Archive.
        assert await store.unreferenced_blobs(conn, blob_ids) == [rows[1].blob_id]
        assert await store.unreferenced_blobs(conn, []) == []
    assert [r.uid for r in await _rows(rig, account)] == [3]


async def test_cache_fill_never_clobbers_flags_stored_meanwhile(rig: StoreRig) -> None:
    # Session A loads a never-indexed row; session B stores a flag on it; then A fills
    # the cache with its stale copy of the row. B's flag must survive.
    account, rows = await _setup(rig, 1)
    stale = rows[0]
    assert not stale.indexed
    async with rig.engine.begin() as conn:
        await store.set_flags(conn, account, stale.mailbox_id, {stale.id: frozenset({FLAG})})
    cache = MessageCache(size=5, message_key=None, extra=b"x")
    async with rig.engine.begin() as conn:
        await store.save_cache(conn, account, stale, cache)
    (row,) = await _rows(rig, account)
    assert row.flags == {FLAG}
    assert row.indexed
    async with rig.engine.connect() as conn:
        assert await store.load_cache(conn, account, row.id) == cache


async def _usage_matches_the_messages(rig: StoreRig, user_id: UserId) -> int:
    """Each mailbox's used_bytes equals its messages' sizes; returns the user's total."""
    mb, msg = t.cm_mailboxes, t.cm_messages
    async with rig.engine.connect() as conn:
        boxes = (
            await conn.execute(select(mb.c.id, mb.c.used_bytes).where(mb.c.user_id == user_id))
        ).all()
        for box in boxes:
            sizes = await conn.execute(select(msg.c.size_rounded).where(msg.c.mailbox_id == box.id))
            assert box.used_bytes == sum(r.size_rounded for r in sizes), box.id
        return await store.used_bytes(conn, user_id)


async def test_usage_counters_follow_every_change(rig: StoreRig) -> None:
    account, rows = await _setup(rig, 4)
    user_id = account.user.id
    one = rows[0].size_rounded
    assert await _usage_matches_the_messages(rig, user_id) == 4 * one
    async with rig.engine.begin() as conn:
        archive = await store.get_mailbox(conn, account, "Archive")
        await store.copy_messages(conn, account, rows[:2], archive.id)
        work = await store.create_mailbox(conn, account, "Work")
        await store.copy_messages(conn, account, rows[2:], work.id)
    assert await _usage_matches_the_messages(rig, user_id) == 8 * one
    async with rig.engine.begin() as conn:
        await store.expunge(conn, rows[0].mailbox_id, rows[:1])
    async with rig.engine.begin() as conn:
        await store.expunge(conn, rows[0].mailbox_id, rows[1:2])
    assert await _usage_matches_the_messages(rig, user_id) == 6 * one
    async with rig.engine.begin() as conn:
        await store.rename_inbox(conn, account, "Old INBOX")
        await store.delete_mailbox(conn, account, "Work")
    assert await _usage_matches_the_messages(rig, user_id) == 4 * one
    user = account.user
    await store.deliver_message(rig.engine, rig.blobs, user, _source(b"Subject: x\r\n\r\n"))
    assert await _usage_matches_the_messages(rig, user_id) > 4 * one


async def test_mailbox_state_is_the_counts_and_the_row_of_one_moment(rig: StoreRig) -> None:
    account, rows = await _setup(rig)
    box_id = rows[0].mailbox_id
    async with rig.engine.connect() as conn:
        state = await store.mailbox_state(conn, box_id)
        box = await store.get_mailbox(conn, account, "INBOX")
        assert state is not None
        assert (state.messages, state.unclaimed) == await store.mailbox_counts(conn, box_id)
        assert (state.uidnext, state.highest_modseq) == (box.uidnext, box.highest_modseq)
        assert await store.mailbox_state(conn, store.MailboxId(box_id + 1000)) is None


async def test_mailbox_state_never_counts_more_messages_than_its_uidnext_allows(
    rig: StoreRig,
) -> None:
    """Read while deliveries commit: every answer is one a mailbox can have (messages
    below UIDNEXT). Two statements outside a transaction once answered MESSAGES 2
    UIDNEXT 2 to NOTIFY when a delivery committed between them."""
    _account, rows = await _setup(rig, count=1)
    box_id = rows[0].mailbox_id
    async with rig.engine.connect() as conn:
        user = await get_user(conn, "alice@example.org")

    async def deliver() -> None:
        for i in range(30):
            body = b"Subject: more %d\r\n\r\n" % i
            await store.deliver_message(rig.engine, rig.blobs, user, _source(body))

    async def read() -> list[tuple[int, int]]:
        seen = []
        for _ in range(300):
            async with rig.engine.connect() as conn:
                state = await store.mailbox_state(conn, box_id)
            assert state is not None
            seen.append((state.messages, state.uidnext))
            await asyncio.sleep(0)
        return seen

    _, seen = await asyncio.gather(deliver(), read())
    assert all(messages < uidnext for messages, uidnext in seen), seen
    assert seen[-1][0] >= 1
