"""Subscriptions: sealed names bound to their rows (issue 14, finding 6)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from cryptmail import store
from cryptmail.crypto import FieldCipher, context
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


async def _store_as_before_normalising(rig: StoreRig, account: UnlockedAccount, name: str) -> None:
    """A subscription row as a cryptmail before names were normalised wrote it: the
    name in the form given, its lookup of that form."""
    lookup = _lookup(account, name)
    sealed = account.fields.seal(
        name.encode(), context("cm_subscriptions.name_sealed", account.user.id, lookup)
    )
    async with rig.engine.begin() as conn:
        await conn.execute(
            t.cm_subscriptions.insert().values(
                user_id=account.user.id, name_lookup=lookup, name_sealed=sealed
            )
        )


async def test_names_in_other_normal_forms_are_merged_into_nfc_on_read(rig: StoreRig) -> None:
    """RFC 9051 5.1 (names stored in NFC): a name subscribed in NFD, or in NFD and NFC
    both, before names were normalised is listed once in NFC; reading merges its rows
    into the NFC row (the NFC row first, in one transaction: nothing lost), and
    unsubscribing either form removes it. Bob's rows are left alone."""
    alice = await _account(rig)
    bob = await _account(rig, "bob@example.org")
    nfc, nfd = "Entwürfe/Köln", "Entwu\u0308rfe/Ko\u0308ln"
    mixed = "Entwürfe/Ko\u0308ln"  # neither NFC nor NFD: the form a client once sent
    async with rig.engine.begin() as conn:
        await store.subscribe(conn, alice, nfd)  # stored in NFC now
        defaults = len(await store.list_subscriptions(conn, bob))
    for name in (nfd, mixed, "Grün/Ga\u0308rten"):
        await _store_as_before_normalising(rig, alice, name)
    await _store_as_before_normalising(rig, bob, nfd)
    assert len(await _rows(rig, alice)) == defaults + 4
    defaults_named = {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
    assert await _subscribed(rig, alice) - defaults_named == {nfc, "Grün/Gärten"}
    lookups = {lookup for lookup, _sealed in await _rows(rig, alice)}
    assert len(lookups) == defaults + 2
    assert {_lookup(alice, nfc), _lookup(alice, "Grün/Gärten")} <= lookups
    assert not {_lookup(alice, nfd), _lookup(alice, mixed)} & lookups
    async with rig.engine.begin() as conn:
        assert await store.unsubscribe(conn, alice, "Gru\u0308n/Gärten")
        assert not await store.unsubscribe(conn, alice, "Grün/Gärten")
    assert "Grün/Gärten" not in await _subscribed(rig, alice)
    # Bob's NFD row is his own: untouched by Alice's reads, merged at his own.
    assert _lookup(bob, nfd) in {lookup for lookup, _ in await _rows(rig, bob)}
    assert nfc in await _subscribed(rig, bob)


async def test_a_row_that_fails_is_not_merged_or_lost(
    rig: StoreRig, caplog: pytest.LogCaptureFixture
) -> None:
    """A row whose sealed name fails authentication is left out, as before, and left in
    place: the merge never deletes what it could not read."""
    account = await _account(rig)
    await _subscribed(rig, account)  # the defaults first
    await _store_as_before_normalising(rig, account, "Ko\u0308ln")
    await _store_as_before_normalising(rig, account, "Mu\u0308nchen")
    a, b = _lookup(account, "Ko\u0308ln"), _lookup(account, "Mu\u0308nchen")
    await swap(rig.engine, t.cm_subscriptions, "name_sealed", "name_lookup", a, b)
    before = await _rows(rig, account)
    assert not {"Köln", "München"} & await _subscribed(rig, account)
    assert caplog.text.count("a subscription left out") == 2
    assert {lookup for lookup, _ in await _rows(rig, account)} >= {a, b}
    assert len(await _rows(rig, account)) == len(before)
