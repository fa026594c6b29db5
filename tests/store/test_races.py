"""Several sessions and deliveries on one store at once: flag changes are deltas on the
stored flags, a second expunge is a no-op, first deliveries race for the default
folders, and UIDVALIDITY only grows."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from sqlalchemy import select, text

from cryptmail import store
from cryptmail.db import tables as t
from cryptmail.keys import UnlockedAccount, create_user, unlock_account
from cryptmail.store import MessageRow
from cryptmail.users import get_user

from .conftest import PASSWORD, StoreRig


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


async def test_flag_changes_apply_to_the_stored_flags(rig: StoreRig) -> None:
    account, rows = await _setup(rig)
    row = rows[2]
    box = row.mailbox_id
    first = await store.change_flags(
        rig.engine, account, box, [row.id], "set", frozenset({"\\Seen"})
    )
    assert first.changed == {row.id: {"\\Seen"}} and first.modseq > 0
    # Another session removes \Seen; this one, holding the old rows, adds \Answered.
    await store.change_flags(rig.engine, account, box, [row.id], "remove", frozenset({"\\Seen"}))
    done = await store.change_flags(
        rig.engine, account, box, [row.id], "add", frozenset({"\\Answered"})
    )
    assert done.changed == {row.id: {"\\Answered"}}
    assert (await _rows(rig, account))[2].flags == {"\\Answered"}
    # Nothing to change: no write, no new modseq.
    again = await store.change_flags(
        rig.engine, account, box, [row.id], "add", frozenset({"\\Answered"})
    )
    assert again.modseq == 0 and not again.changed


async def test_concurrent_flag_changes_all_land(rig: StoreRig) -> None:
    account, rows = await _setup(rig, count=1)
    row = rows[0]
    keywords = [f"kw{n}" for n in range(8)]
    await asyncio.gather(
        *(
            store.change_flags(
                rig.engine, account, row.mailbox_id, [row.id], "add", frozenset({kw})
            )
            for kw in keywords
        )
    )
    assert (await _rows(rig, account))[0].flags == set(keywords)


async def test_unchangedsince_checks_the_stored_modseq(rig: StoreRig) -> None:
    account, rows = await _setup(rig, count=2)
    box = rows[0].mailbox_id
    seen = max(r.modseq for r in rows)  # what a session loaded
    await store.change_flags(
        rig.engine, account, box, [rows[0].id], "add", frozenset({"\\Flagged"})
    )
    done = await store.change_flags(
        rig.engine,
        account,
        box,
        [r.id for r in rows],
        "add",
        frozenset({"\\Seen"}),
        unchanged_since=seen,
    )
    assert done.modified == [rows[0].id]
    assert list(done.changed) == [rows[1].id]
    now = await _rows(rig, account)
    assert now[0].flags == {"\\Flagged"} and now[1].flags == {"\\Seen"}


async def test_flag_change_of_an_expunged_row_reports_it_gone(rig: StoreRig) -> None:
    account, rows = await _setup(rig, count=2)
    async with rig.engine.begin() as conn:
        await store.expunge(conn, rows[0].mailbox_id, [rows[0]])
    done = await store.change_flags(
        rig.engine, account, rows[0].mailbox_id, [r.id for r in rows], "add", frozenset({"\\Seen"})
    )
    assert done.gone == [rows[0].id] and list(done.changed) == [rows[1].id]


async def test_second_expunge_of_the_same_rows_is_a_no_op(rig: StoreRig) -> None:
    account, rows = await _setup(rig)
    box = rows[0].mailbox_id
    async with rig.engine.begin() as conn:
        _modseq, blobs = await store.expunge(conn, box, rows[:2])
    assert len(blobs) == 2
    async with rig.engine.begin() as conn:  # another session, from its stale view
        _modseq, blobs = await store.expunge(conn, box, rows)
    assert blobs == [rows[2].blob_id]
    assert await _rows(rig, account) == []
    async with rig.engine.connect() as conn:
        assert await store.vanished_since(conn, box, 0) == [1, 2, 3]
        used = (
            await conn.execute(
                select(t.cm_mailboxes.c.used_bytes).where(t.cm_mailboxes.c.id == box)
            )
        ).scalar_one()
    assert used == 0


async def test_concurrent_expunges_of_the_same_rows_both_succeed(rig: StoreRig) -> None:
    account, rows = await _setup(rig)

    async def session() -> None:
        async with rig.engine.begin() as conn:
            await store.expunge(conn, rows[0].mailbox_id, rows)

    await asyncio.gather(session(), session())
    assert await _rows(rig, account) == []


async def test_copy_of_an_expunged_row_copies_nothing(rig: StoreRig) -> None:
    account, rows = await _setup(rig, count=2)
    async with rig.engine.begin() as conn:
        await store.expunge(conn, rows[0].mailbox_id, [rows[0]])
        archive = await store.get_mailbox(conn, account, "Archive")
        pairs = await store.copy_messages(conn, account, rows, archive.id)
    assert pairs == [(2, 1)]


async def test_uidvalidity_of_a_recreated_name_always_grows(rig: StoreRig) -> None:
    account, _rows_ = await _setup(rig, count=0)
    seen: list[int] = []
    for _round in range(300):
        async with rig.engine.begin() as conn:
            box = await store.create_mailbox(conn, account, "Reused")
            seen.append(box.uidvalidity)
            await store.delete_mailbox(conn, account, "Reused")
    assert all(a < b for a, b in zip(seen, seen[1:], strict=False))
    async with rig.engine.begin() as conn:
        await store.create_mailbox(conn, account, "Old")
        await store.rename_mailbox(conn, account, "Old", "New")
        renamed = await store.get_mailbox(conn, account, "New")
    assert renamed.uidvalidity > seen[-1] + 1
    assert seen[-1] < 2**32


async def test_uidvalidity_starts_above_rows_made_by_other_tools(rig: StoreRig) -> None:
    account, _rows_ = await _setup(rig, count=0)
    far = 3_000_000_000  # a value set by another tool, ahead of the clock
    async with rig.engine.begin() as conn:
        await conn.execute(
            t.cm_uidvalidity.delete().where(t.cm_uidvalidity.c.user_id == account.user.id)
        )
        await conn.execute(
            t.cm_mailboxes.update()
            .where(t.cm_mailboxes.c.user_id == account.user.id, t.cm_mailboxes.c.role == "junk")
            .values(uidvalidity=far)
        )
        box = await store.create_mailbox(conn, account, "After")
    assert box.uidvalidity > far


async def test_parallel_first_deliveries_to_a_user_made_by_sql(rig: StoreRig) -> None:
    # An ISPmail row inserted by SQL: no key (crypt = 0), no folders, no counter.
    async with rig.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO virtual_users (domain_id, email, password, quota, crypt) "
                "SELECT id, 'new@example.org', '{PLAIN}x', 0, 0 FROM virtual_domains"
            )
        )
        user = await get_user(conn, "new@example.org")
    bodies = [b"Subject: %d\r\n\r\nfirst %d\r\n" % (n, n) for n in range(5)]
    results = await asyncio.wait_for(
        asyncio.gather(
            *(store.deliver_message(rig.engine, rig.blobs, user, _source(b)) for b in bodies)
        ),
        timeout=20,
    )
    assert sorted(r.uid for r in results) == [1, 2, 3, 4, 5]
    async with rig.engine.connect() as conn:
        boxes = await store.list_mailboxes(conn, user.id, None)
        inbox = await store.inbox_id(conn, user.id)
        count, _unclaimed = await store.mailbox_counts(conn, inbox)
    assert sorted(b.role or "" for b in boxes) == sorted(store.DEFAULT_MAILBOXES)
    assert len({b.uidvalidity for b in boxes}) == 6
    assert count == 5
    report = await store.check_store(rig.engine, rig.blobs)
    assert report.clean, report


async def test_a_user_is_created_with_the_default_folders(rig: StoreRig) -> None:
    created = await create_user(
        rig.engine,
        "folders@example.org",
        PASSWORD,
        rig.config.crypto,
        with_user=store.ensure_default_mailboxes,
    )
    async with rig.engine.connect() as conn:
        boxes = await store.list_mailboxes(conn, created.user.id, None)
    assert sorted(b.role or "" for b in boxes) == sorted(store.DEFAULT_MAILBOXES)
    # A first delivery and a login find them and create nothing.
    inbox = await store.create_default_mailboxes(rig.engine, created.user.id)
    assert inbox == next(b.id for b in boxes if b.role == "inbox")


async def test_moves_and_flag_changes_do_not_deadlock(rig: StoreRig) -> None:
    """MOVEs in both directions and flag changes on the same rows, at once: none may
    fail as a deadlock victim (MariaDB, PostgreSQL). Found by the multi-session test."""
    account, _rows_ = await _setup(rig, count=6)
    async with rig.engine.connect() as conn:
        inbox = await store.get_mailbox(conn, account, "INBOX")
        archive = await store.get_mailbox(conn, account, "Archive")

    async def move(source: int, target: int) -> None:
        async with rig.engine.connect() as conn:
            rows = await store.load_messages(conn, account, store.MailboxId(source))
        async with rig.engine.begin() as conn:
            await store.move_messages(
                conn, account, rows[:2], store.MailboxId(source), store.MailboxId(target)
            )

    async def flag(mailbox_id: int) -> None:
        async with rig.engine.connect() as conn:
            rows = await store.load_messages(conn, account, store.MailboxId(mailbox_id))
        await store.change_flags(
            rig.engine, account, store.MailboxId(mailbox_id), [r.id for r in rows], "add",
            frozenset({"\\Flagged"}),
        )  # fmt: skip

    for _round in range(15):
        await asyncio.gather(
            move(inbox.id, archive.id), move(archive.id, inbox.id), flag(inbox.id), flag(archive.id)
        )
    total = len(await _rows(rig, account)) + len(await _rows(rig, account, "Archive"))
    assert total == 6
