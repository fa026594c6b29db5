"""The in-memory listing of a mailbox: loaded once, then brought up to date from the
database with only what changed, whoever changed it (this engine, another engine on the
same SQLite file as another process would), and gone with the account."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail import store
from cryptmail.db import create_engine
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.store import Mailbox, MailboxListing, MessageRow
from cryptmail.users import get_user

from .conftest import PASSWORD, StoreRig

USER = "alice@example.org"


async def _source(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _deliver(rig: StoreRig, engine: AsyncEngine | None = None, count: int = 1) -> None:
    async with rig.engine.connect() as conn:
        user = await get_user(conn, USER)
    for i in range(count):
        body = b"Subject: %d\r\n\r\n" % i + os.urandom(64)
        await store.deliver_message(engine or rig.engine, rig.blobs, user, _source(body))


async def _setup(rig: StoreRig, count: int = 3) -> UnlockedAccount:
    await rig.user(USER)
    await _deliver(rig, count=count)
    account, _ = await unlock_account(rig.engine, USER, PASSWORD, rig.config.crypto)
    return account


async def _inbox(engine: AsyncEngine, account: UnlockedAccount) -> Mailbox:
    async with engine.connect() as conn:
        return await store.get_mailbox(conn, account, "INBOX")


async def _listing(rig: StoreRig, account: UnlockedAccount) -> MailboxListing:
    return await store.mailbox_listing(rig.engine, account, await _inbox(rig.engine, account))


async def _fresh_rows(rig: StoreRig, account: UnlockedAccount) -> list[MessageRow]:
    """What a full reload gives: the listing must equal it."""
    box = await _inbox(rig.engine, account)
    async with rig.engine.connect() as conn:
        return await store.load_messages(conn, account, box.id)


def _check(listing: MailboxListing, rows: list[MessageRow]) -> None:
    assert listing.uids == [r.uid for r in rows]
    assert listing.rows == {r.uid: r for r in rows}
    assert listing.unseen == [r.uid for r in rows if "\\Seen" not in r.flags]
    assert listing.deleted == sum(1 for r in rows if "\\Deleted" in r.flags)
    assert listing.size == sum(r.size_rounded for r in rows)
    fresh = {r.uid for r in rows if not r.claimed or store.RECENT_FLAG in r.flags}
    assert listing.fresh == fresh
    keywords = {f for r in rows for f in r.flags if not f.startswith("\\")}
    assert set(listing.keywords) == keywords


@contextmanager
def _statements(engine: AsyncEngine) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)


async def test_loaded_once_then_no_query_while_nothing_changed(rig: StoreRig) -> None:
    account = await _setup(rig)
    listing = await _listing(rig, account)
    _check(listing, await _fresh_rows(rig, account))
    box = await _inbox(rig.engine, account)
    # The rows were never claimed: they are read again by id until a session claims them.
    await store.claim_messages(rig.engine, account, list(listing.rows.values()))
    listing.note_claimed(listing.uids)
    with _statements(rig.engine) as seen:
        again = await store.mailbox_listing(rig.engine, account, box)
        # A mailbox row read before another session's sync is older than the listing:
        # nothing to read for it either (no full reload).
        await store.mailbox_listing(rig.engine, account, replace(box, highest_modseq=1))
    assert again is listing
    assert seen == []
    _check(listing, await _fresh_rows(rig, account))


async def test_flag_changes_expunges_and_new_mail_of_other_connections(rig: StoreRig) -> None:
    account = await _setup(rig, count=4)
    listing = await _listing(rig, account)
    rows = dict(listing.rows)
    await store.claim_messages(rig.engine, account, list(rows.values()))
    listing.note_claimed(rows)
    borrowed, uids = listing.borrow()
    before = dict(borrowed)

    # Another connection (a session elsewhere): flags, an expunge, two deliveries.
    box_id = listing.mailbox_id
    await store.change_flags(
        rig.engine, account, box_id, [rows[1].id, rows[2].id], "add", frozenset({"\\Seen", "$A"})
    )
    await store.change_flags(
        rig.engine, account, box_id, [rows[3].id], "add", frozenset({"\\Deleted"})
    )
    async with rig.engine.begin() as conn:
        await store.expunge(conn, box_id, [rows[4]])
    await _deliver(rig, count=2)

    listing = await _listing(rig, account)
    _check(listing, await _fresh_rows(rig, account))
    assert listing.uids == [1, 2, 3, 5, 6]
    assert listing.first_unseen == 3
    assert listing.fresh == {5, 6}  # the new mail, nobody has claimed it
    assert listing.keywords == {"$A": 2}
    # What a session borrowed before stays as it was.
    assert borrowed == before and uids == [1, 2, 3, 4]

    # Keywords leave the count with the last row that carried them.
    await store.change_flags(
        rig.engine, account, box_id, [rows[1].id, rows[2].id], "remove", frozenset({"$A"})
    )
    listing = await _listing(rig, account)
    assert listing.keywords == {}
    _check(listing, await _fresh_rows(rig, account))


async def test_changes_through_another_engine_are_seen(rig: StoreRig) -> None:
    """Another process on the same SQLite file: its own engine, its own unlocked account."""
    account = await _setup(rig, count=3)
    listing = await _listing(rig, account)
    other_engine = create_engine(rig.config.database_url)
    try:
        other, _ = await unlock_account(other_engine, USER, PASSWORD, rig.config.crypto)
        box_id = listing.mailbox_id
        # A claim gives first flags without a new modseq: seen all the same.
        await store.claim_messages(other_engine, other, [listing.rows[1]])
        listing = await _listing(rig, account)
        assert 1 not in listing.fresh and listing.rows[1].claimed
        _check(listing, await _fresh_rows(rig, account))

        # A first indexing by a read-only session (stored \Recent, no new modseq).
        async with other_engine.begin() as conn:
            cache = store.MessageCache(size=10, message_key=None)
            await store.save_cache(conn, other, listing.rows[2], cache)
        listing = await _listing(rig, account)
        assert listing.rows[2].flags == {store.RECENT_FLAG} and 2 in listing.fresh
        _check(listing, await _fresh_rows(rig, account))

        await store.change_flags(
            other_engine, other, box_id, [listing.rows[3].id], "set", frozenset({"\\Seen"})
        )
        async with other_engine.begin() as conn:
            await store.expunge(conn, box_id, [listing.rows[1]])
        await _deliver(rig, engine=other_engine)
        listing = await _listing(rig, account)
        assert listing.uids == [2, 3, 4]
        assert listing.rows[3].flags == {"\\Seen"}
        _check(listing, await _fresh_rows(rig, account))
    finally:
        await other_engine.dispose()


async def test_a_new_uidvalidity_is_a_new_listing(rig: StoreRig) -> None:
    account = await _setup(rig, count=1)
    box = await _inbox(rig.engine, account)
    listing = await store.mailbox_listing(rig.engine, account, box)
    assert store.cached_listing(account, box) is listing
    other = replace(box, uidvalidity=box.uidvalidity + 1)
    assert store.cached_listing(account, other) is None
    fresh = await store.mailbox_listing(rig.engine, account, other)
    assert fresh is not listing and fresh.uidvalidity == other.uidvalidity


async def test_listings_go_with_the_account(rig: StoreRig) -> None:
    account = await _setup(rig, count=1)
    before = store.listing_count()
    await _listing(rig, account)
    assert store.listing_count() == before + 1
    store.drop_listings(account)
    assert store.listing_count() == before
    await _listing(rig, account)
    assert store.listing_count() == before + 1
    del account
    gc.collect()
    assert store.listing_count() == before
