"""URLAUTH grants on SQLite, MariaDB and PostgreSQL: migration 0017's table (a binary
primary key, VARBINARY on MariaDB), grant, redeem without a key, the cap, expiry,
revocation by mailbox tag, and pruning, through the store tests of tests/store; and
parallel grants of one user, which stop at the limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import func, select

from cryptmail import store
from cryptmail.db import tables as t
from cryptmail.errors import QuotaExceeded
from cryptmail.keys import unlock_account
from cryptmail.store import MessageId
from store import test_urlauth
from store.conftest import PASSWORD, StoreRig

pytestmark = pytest.mark.integration

CASES: list[Callable[[StoreRig], Awaitable[None]]] = [
    test_urlauth.test_failures_are_all_none,
    test_urlauth.test_expiry_prunes,
    test_urlauth.test_limit_counts_only_live_rows,
    test_urlauth.test_revoke_all_or_one_mailbox,
]


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__.removeprefix("test_"))
async def test_url_grants(store_rig: StoreRig, case: Callable[[StoreRig], Awaitable[None]]) -> None:
    await case(store_rig)


@pytest.mark.parametrize("crypt", [2, 0], ids=["sealed", "plain"])
async def test_redeemed_without_any_key(store_rig: StoreRig, crypt: int) -> None:
    await test_urlauth.test_redeemed_without_any_key(store_rig, crypt)


async def test_parallel_grants_stop_at_the_limit(store_rig: StoreRig) -> None:
    # On MariaDB and PostgreSQL each grant's count read a snapshot that missed the
    # others' inserts: all eight of eight parallel grants fitted under a limit of 3.
    limit = 3
    user = await store_rig.user("alice@example.org")
    account, _ = await unlock_account(
        store_rig.engine, user.email, PASSWORD, store_rig.config.crypto
    )
    appended = await store.deliver_message(
        store_rig.engine, store_rig.blobs, user, test_urlauth._source()
    )
    assert appended.blob is not None
    opened = await store.open_blob(store_rig.blobs, account, appended.blob.blob_id)

    async def grant() -> bool:
        try:
            await store.grant_url(
                store_rig.engine,
                account,
                url=test_urlauth.URL,
                row_id=MessageId(appended.row_id),
                mailbox_id=appended.mailbox_id,
                uid=appended.uid,
                opened=opened,
                extra=b"plan",
                expires_at=None,
                limit=limit,
            )
        except QuotaExceeded:
            return False
        return True

    for round_ in range(5):
        granted = await asyncio.gather(*(grant() for _ in range(8)))
        async with store_rig.engine.connect() as conn:
            held = await conn.scalar(select(func.count()).select_from(t.cm_url_grants))
        assert (granted.count(True), held) == (limit, limit), (round_, granted)
        await store.revoke_urls(store_rig.engine, account)
