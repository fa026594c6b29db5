"""App passwords: one named slot each; revoking deletes only that slot."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.errors import (
    AppPasswordExists,
    AppPasswordNotFound,
    AuthenticationFailed,
    KeySlotError,
)
from cryptmail.keys import (
    add_app_password,
    list_app_passwords,
    revoke_app_password,
    unlock_account,
)
from keys.conftest import PASSWORD, MakeUser, pw

ALICE = "alice@example.org"


async def test_add_list_use_revoke(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    new = await make_user()
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    phone = await add_app_password(engine, account, " phone ", crypto)
    laptop = await add_app_password(engine, account, "Laptop work@home", crypto)
    assert phone != laptop
    infos = await list_app_passwords(engine, new.user.id)
    assert [i.name for i in infos] == ["Laptop work@home", "phone"]

    await revoke_app_password(engine, new.user.id, "phone")
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw(phone), crypto)
    _account, slot = await unlock_account(engine, ALICE, pw(laptop), crypto)
    assert slot.name == "Laptop work@home"
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    assert [i.name for i in await list_app_passwords(engine, new.user.id)] == ["Laptop work@home"]


async def test_names_are_unique_per_user(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    await make_user()
    await make_user("bob@example.org")
    alice, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    bob, _slot = await unlock_account(engine, "bob@example.org", pw(PASSWORD), crypto)
    await add_app_password(engine, alice, "phone", crypto)
    await add_app_password(engine, bob, "phone", crypto)
    with pytest.raises(AppPasswordExists):
        await add_app_password(engine, alice, "phone", crypto)


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "tab\there", "new\nline", "semi;colon"])
async def test_bad_names_are_refused(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, name: str
) -> None:
    await make_user()
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    with pytest.raises(KeySlotError):
        await add_app_password(engine, account, name, crypto)


async def test_revoking_an_unknown_name(engine: AsyncEngine, make_user: MakeUser) -> None:
    new = await make_user()
    with pytest.raises(AppPasswordNotFound):
        await revoke_app_password(engine, new.user.id, "phone")
