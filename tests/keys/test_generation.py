"""The credential generation: every change that must end cached logins bumps it, in the
transaction that makes the change; nothing else does."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.errors import AppPasswordNotFound
from cryptmail.keys import (
    add_app_password,
    change_password,
    recover,
    revoke_app_password,
    rotate_key_pair,
    unlock_account,
)
from cryptmail.keys._generation import bump_generation, read_generation
from keys.conftest import PASSWORD, MakeUser, pw

ALICE = "alice@example.org"


async def generation(engine: AsyncEngine, user_id: int) -> int | None:
    async with engine.connect() as conn:
        return await read_generation(conn, user_id)


async def test_a_new_account_starts_at_zero_and_bump_counts_up(
    engine: AsyncEngine, make_user: MakeUser
) -> None:
    new = await make_user()
    assert await generation(engine, new.user.id) == 0
    async with engine.begin() as conn:
        await bump_generation(conn, new.user.id)
        await bump_generation(conn, new.user.id)
    assert await generation(engine, new.user.id) == 2


async def test_a_user_without_keys_has_no_generation(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await bump_generation(conn, 999)  # no row: nothing to do, no error
    assert await generation(engine, 999) is None


async def test_credential_changes_bump_it_and_logins_do_not(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    new = await make_user()
    user_id = new.user.id
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    await add_app_password(engine, account, "phone", crypto)
    assert await generation(engine, user_id) == 0

    await change_password(engine, ALICE, pw(PASSWORD), pw("second password"), crypto)
    assert await generation(engine, user_id) == 1
    await revoke_app_password(engine, user_id, "phone")
    assert await generation(engine, user_id) == 2
    assert new.recovery_code is not None
    await recover(engine, ALICE, new.recovery_code, pw("third password"), crypto)
    assert await generation(engine, user_id) == 3
    # The account unlocked at the start is three re-keys old: rotation needs a fresh one.
    account, _slot = await unlock_account(engine, ALICE, pw("third password"), crypto)
    async with engine.begin() as conn:
        await rotate_key_pair(conn, account, "prime256v1")
    assert await generation(engine, user_id) == 4


async def test_a_failed_revocation_bumps_nothing(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    new = await make_user()
    with pytest.raises(AppPasswordNotFound):
        await revoke_app_password(engine, new.user.id, "none such")
    assert await generation(engine, new.user.id) == 0
