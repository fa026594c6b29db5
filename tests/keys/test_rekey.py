"""Re-keying around the attack test: version-1 slots upgraded at use, the cost of a
password change, a stale session refused, the generation and the data keys."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.crypto import SlotLabel, slot_version
from cryptmail.crypto._slots_v1 import lock_slot_v1
from cryptmail.db import tables as t
from cryptmail.errors import KeySlotError
from cryptmail.keys import (
    add_app_password,
    change_password,
    has_recovery_code,
    list_key_pairs,
    unlock_account,
)
from cryptmail.keys._slots import slots_of
from keys.conftest import PASSWORD, MakeUser, pw

ALICE = "alice@example.org"


async def _make_v1(engine: AsyncEngine, crypto: CryptoConfig, kind: str, secret: bytes) -> None:
    """Write the `kind` slot as version 1, as cryptmail did before re-keying (and before
    key rows had MACs: migration 0008 came later)."""
    account, _ = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    async with engine.begin() as conn:
        slot = next(s for s in await slots_of(conn, account.user.id) if s.kind == kind)
        label = SlotLabel(account.account_uuid, kind, "", 0)
        record = lock_slot_v1(
            account.account_key.reveal(), secret, crypto.argon2, label.v1_context()
        )
        await conn.execute(
            update(t.cm_key_slots).where(t.cm_key_slots.c.id == slot.id).values(record=record)
        )
        await conn.execute(
            update(t.cm_accounts)
            .where(t.cm_accounts.c.user_id == account.user.id)
            .values(key_mac=None, key_mac_slots=None, delivery_mac=None)
        )


async def test_a_login_upgrades_a_version_1_password_slot_without_a_second_argon2(
    engine: AsyncEngine, make_user: MakeUser, crypto: CryptoConfig, argon2_runs: list[str]
) -> None:
    created = await make_user(ALICE)
    await _make_v1(engine, crypto, "password", PASSWORD.encode())
    async with engine.connect() as conn:
        assert [slot_version(s.record) for s in await slots_of(conn, created.user.id)] == [1, 2]
    argon2_runs.clear()
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    assert argon2_runs == ["slot key"]
    async with engine.connect() as conn:
        assert [slot_version(s.record) for s in await slots_of(conn, created.user.id)] == [2, 2]
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)  # and it still opens


async def test_a_re_key_deletes_a_version_1_slot_it_cannot_seal_to(
    engine: AsyncEngine, make_user: MakeUser, crypto: CryptoConfig
) -> None:
    created = await make_user(ALICE)
    assert created.recovery_code is not None
    await _make_v1(engine, crypto, "recovery", created.recovery_code.replace("-", "").encode())
    dropped = await change_password(engine, ALICE, pw(PASSWORD), pw("new"), crypto)
    assert dropped == (("recovery", ""),)  # so the caller tells the user, not silence
    assert not await has_recovery_code(engine, created.user.id)
    await unlock_account(engine, ALICE, pw("new"), crypto)


async def test_a_change_that_drops_nothing_says_so(
    engine: AsyncEngine, make_user: MakeUser, crypto: CryptoConfig
) -> None:
    created = await make_user(ALICE)
    assert await change_password(engine, ALICE, pw(PASSWORD), pw("new"), crypto) == ()
    assert await has_recovery_code(engine, created.user.id)


async def test_a_password_change_costs_three_argon2_and_moves_the_generation(
    engine: AsyncEngine, make_user: MakeUser, crypto: CryptoConfig, argon2_runs: list[str]
) -> None:
    created = await make_user(ALICE)
    argon2_runs.clear()
    await change_password(engine, ALICE, pw(PASSWORD), pw("new"), crypto)
    assert sorted(argon2_runs) == ["new hash", "slot key", "slot key"]
    async with engine.connect() as conn:
        generation = (
            await conn.execute(
                select(t.cm_accounts.c.generation).where(t.cm_accounts.c.user_id == created.user.id)
            )
        ).scalar_one()
        data = (
            await conn.execute(
                select(t.cm_data_keys.c.generation).where(
                    t.cm_data_keys.c.user_id == created.user.id
                )
            )
        ).all()
        pairs = await list_key_pairs(conn, created.user.id)
    assert generation == 1
    assert sorted(r.generation for r in data) == [0, 1]
    assert [p.active for p in pairs] == [False, True]
    account, _ = await unlock_account(engine, ALICE, pw("new"), crypto)
    assert account.generation == 1 and account.fields.generation == 1
    assert len(account.private_keys) == 2


async def test_a_session_from_before_a_re_key_cannot_add_a_slot(
    engine: AsyncEngine, make_user: MakeUser, crypto: CryptoConfig
) -> None:
    await make_user(ALICE)
    stale, _ = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    await change_password(engine, ALICE, pw(PASSWORD), pw("new"), crypto)
    with pytest.raises(KeySlotError, match="sign in again"):
        await add_app_password(engine, stale, "phone", crypto)
