"""Folder names and subscriptions sealed before field version 3 are bound to their rows
at the next login (issue 14, finding 6)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from cryptmail import store
from cryptmail.crypto import FieldCipher
from cryptmail.db import tables as t
from cryptmail.keys import UnlockedAccount, unlock_account

from .conftest import PASSWORD, StoreRig
from .sealed_rows import legacy_seal, swap

NAMES = ("Payroll", "Newsletters", "Payroll/2025")


async def _old_account(rig: StoreRig) -> UnlockedAccount:
    """A user whose folder names and subscriptions are all in the old format."""
    await rig.user("alice@example.org")
    account, _ = await unlock_account(rig.engine, "alice@example.org", PASSWORD, rig.config.crypto)
    uid = account.user.id
    async with rig.engine.begin() as conn:
        for name in NAMES:
            box = await store.create_mailbox(conn, account, name)
            await store.subscribe(conn, account, name)
            await conn.execute(
                update(t.cm_mailboxes)
                .where(t.cm_mailboxes.c.id == box.id)
                .values(name_sealed=legacy_seal(account, name.encode(), b"mailbox-name|%d" % uid))
            )
        for name in (*NAMES, "INBOX", "Sent"):
            lookup = account.fields.lookup(name.encode(), b"subscription|%d" % uid)
            await conn.execute(
                update(t.cm_subscriptions)
                .where(t.cm_subscriptions.c.name_lookup == lookup)
                .values(name_sealed=legacy_seal(account, name.encode(), b"subscription|%d" % uid))
            )
    return account


async def _sealed(rig: StoreRig, account: UnlockedAccount) -> list[bytes]:
    mb, sub = t.cm_mailboxes, t.cm_subscriptions
    async with rig.engine.connect() as conn:
        names = await conn.execute(
            select(mb.c.name_sealed).where(mb.c.user_id == account.user.id, mb.c.role.is_(None))
        )
        subs = await conn.execute(select(sub.c.name_sealed).where(sub.c.user_id == account.user.id))
        return [bytes(r.name_sealed) for r in [*names, *subs]]


async def _listed(rig: StoreRig, account: UnlockedAccount) -> tuple[set[str], set[str]]:
    async with rig.engine.begin() as conn:
        boxes = await store.list_mailboxes(conn, account.user.id, account)
        return {b.name for b in boxes}, await store.list_subscriptions(conn, account)


async def test_old_rows_are_resealed_once_and_stay_readable(rig: StoreRig) -> None:
    account = await _old_account(rig)
    before = await _listed(rig, account)
    assert set(NAMES) <= before[0] and set(NAMES) <= before[1]
    assert sum(not FieldCipher.is_current(s) for s in await _sealed(rig, account)) == 8

    assert await store.reseal_old_fields(rig.engine, account) == 8
    assert all(FieldCipher.is_current(s) for s in await _sealed(rig, account))
    assert await _listed(rig, account) == before
    assert await store.reseal_old_fields(rig.engine, account) == 0  # nothing left to do


async def test_resealed_names_are_bound_to_their_rows(rig: StoreRig) -> None:
    """Before the re-seal a swap of sealed name and lookup together goes unseen (the
    documented window); after it, the same swap is caught."""
    account = await _old_account(rig)
    await store.reseal_old_fields(rig.engine, account)
    async with rig.engine.connect() as conn:
        first = await store.get_mailbox(conn, account, "Payroll")
        second = await store.get_mailbox(conn, account, "Newsletters")
    await swap(rig.engine, t.cm_mailboxes, "name_sealed", "id", first.id, second.id)
    await swap(rig.engine, t.cm_mailboxes, "name_lookup", "id", first.id, second.id)
    names, _subs = await _listed(rig, account)
    assert not {"Payroll", "Newsletters"} & names


async def test_a_swapped_old_row_is_not_resealed(
    rig: StoreRig, caplog: pytest.LogCaptureFixture
) -> None:
    """Re-sealing a moved name would make it look genuine: it is left and logged."""
    account = await _old_account(rig)
    async with rig.engine.connect() as conn:
        first = await store.get_mailbox(conn, account, "Payroll")
        second = await store.get_mailbox(conn, account, "Newsletters")
    await swap(rig.engine, t.cm_mailboxes, "name_sealed", "id", first.id, second.id)
    assert await store.reseal_old_fields(rig.engine, account) == 6
    assert "not re-sealed" in caplog.text
    assert sum(not FieldCipher.is_current(s) for s in await _sealed(rig, account)) == 2
    names, subs = await _listed(rig, account)
    assert not {"Payroll", "Newsletters"} & names
    assert set(NAMES) <= subs
