"""Subscriptions: sealed names bound to their rows (issue 14, finding 6)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from cryptmail import store
from cryptmail.crypto import FieldCipher
from cryptmail.db import tables as t
from cryptmail.keys import UnlockedAccount, unlock_account

from .conftest import PASSWORD, StoreRig
from .sealed_rows import legacy_seal, swap


async def _account(rig: StoreRig, email: str = "alice@example.org") -> UnlockedAccount:
    await rig.user(email)
    account, _ = await unlock_account(rig.engine, email, PASSWORD, rig.config.crypto)
    return account


async def _subscribed(rig: StoreRig, account: UnlockedAccount) -> set[str]:
    async with rig.engine.begin() as conn:
        return await store.list_subscriptions(conn, account)


async def _rows(rig: StoreRig, account: UnlockedAccount) -> list[tuple[bytes, bytes]]:
    sub = t.cm_subscriptions
    async with rig.engine.connect() as conn:
        rows = await conn.execute(
            select(sub.c.name_lookup, sub.c.name_sealed).where(sub.c.user_id == account.user.id)
        )
        return [(bytes(r.name_lookup), bytes(r.name_sealed)) for r in rows]


def _lookup(account: UnlockedAccount, name: str) -> bytes:
    return account.fields.lookup(name.encode(), b"subscription|%d" % account.user.id)


async def test_subscribe_list_unsubscribe(rig: StoreRig) -> None:
    account = await _account(rig)
    async with rig.engine.begin() as conn:
        await store.subscribe(conn, account, "Gone/Deep")
        await store.subscribe(conn, account, "inbox")
    assert {"INBOX", "Sent", "Gone/Deep"} <= await _subscribed(rig, account)
    async with rig.engine.begin() as conn:
        assert await store.unsubscribe(conn, account, "Gone/Deep")
        assert not await store.unsubscribe(conn, account, "Gone/Deep")
    assert "Gone/Deep" not in await _subscribed(rig, account)
    assert all(FieldCipher.is_current(sealed) for _, sealed in await _rows(rig, account))


async def test_swapped_subscriptions_are_detected(
    rig: StoreRig, caplog: pytest.LogCaptureFixture
) -> None:
    account = await _account(rig)
    async with rig.engine.begin() as conn:
        await store.subscribe(conn, account, "Payroll")
        await store.subscribe(conn, account, "Newsletters")
    a, b = _lookup(account, "Payroll"), _lookup(account, "Newsletters")
    await swap(rig.engine, t.cm_subscriptions, "name_sealed", "name_lookup", a, b)
    names = await _subscribed(rig, account)
    assert "INBOX" in names
    assert not {"Payroll", "Newsletters"} & names
    assert caplog.text.count("a subscription left out") == 2


async def test_a_subscription_moved_to_another_user_fails(rig: StoreRig) -> None:
    alice = await _account(rig)
    bob = await _account(rig, "bob@example.org")
    async with rig.engine.begin() as conn:
        await store.subscribe(conn, alice, "Alice-Only")
        await store.list_subscriptions(conn, bob)
    sub = t.cm_subscriptions
    async with rig.engine.begin() as conn:
        await conn.execute(
            update(sub)
            .where(sub.c.name_lookup == _lookup(alice, "Alice-Only"))
            .values(user_id=bob.user.id, name_lookup=_lookup(bob, "Alice-Only"))
        )
    assert "Alice-Only" not in await _subscribed(rig, bob)


async def test_old_format_subscriptions_still_open(rig: StoreRig) -> None:
    account = await _account(rig)
    async with rig.engine.begin() as conn:
        await store.subscribe(conn, account, "Payroll")
        await store.subscribe(conn, account, "Newsletters")
    legacy = b"subscription|%d" % account.user.id
    sub = t.cm_subscriptions
    async with rig.engine.begin() as conn:
        for name in ("Payroll", "Newsletters"):
            await conn.execute(
                update(sub)
                .where(sub.c.name_lookup == _lookup(account, name))
                .values(name_sealed=legacy_seal(account, name.encode(), legacy))
            )
    assert {"Payroll", "Newsletters"} <= await _subscribed(rig, account)
    # Bound to the user only, but each must still hash to its row's lookup.
    a, b = _lookup(account, "Payroll"), _lookup(account, "Newsletters")
    await swap(rig.engine, t.cm_subscriptions, "name_sealed", "name_lookup", a, b)
    assert not {"Payroll", "Newsletters"} & await _subscribed(rig, account)


async def test_subscription_changes_reach_the_change_log(rig: StoreRig) -> None:
    """Other nodes' NOTIFY sessions learn of (un)subscriptions from the log (RFC 5465
    SubscriptionChange); an unsubscribe that removed nothing writes no change."""
    from cryptmail.db import ChangeCursor, ChangeKind, newest_change, read_changes

    account = await _account(rig)
    async with rig.engine.begin() as conn:
        await store.list_subscriptions(conn, account)  # seeds the defaults first
    async with rig.engine.connect() as conn:
        cursor = ChangeCursor(await conn.run_sync(newest_change))
    async with rig.engine.begin() as conn:
        await store.subscribe(conn, account, "Lists")
        assert await store.unsubscribe(conn, account, "Lists")
        assert not await store.unsubscribe(conn, account, "Lists")
    async with rig.engine.connect() as conn:
        changes = await conn.run_sync(lambda sync: read_changes(sync, cursor))
    assert [(c.user_id, c.kind) for c in changes] == [(account.user.id, ChangeKind.MAILBOXES)] * 2
