"""App passwords: one named slot each; revoking deletes only that slot, and re-keys (at
once with the unlocked key, at the next login without it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.db import tables as t
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
from keys.test_rekey_attack import attack, copy_database, deliver, read

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


async def generations(engine: AsyncEngine, user_id: int) -> tuple[int, int, bool]:
    """(generation, credential_generation, rekey_pending) of the account."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    t.cm_accounts.c.generation,
                    t.cm_accounts.c.credential_generation,
                    t.cm_accounts.c.rekey_pending,
                ).where(t.cm_accounts.c.user_id == user_id)
            )
        ).one()
    return int(row[0]), int(row[1]), bool(row[2])


async def test_a_revocation_without_the_key_re_keys_at_the_next_login(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, db_path: Path, tmp_path: Path
) -> None:
    """An admin (the CLI) or a web page revokes without the account key: the slot goes
    and the credential generation moves at once, the re-key waits for the next login
    that opens the key. Until then a saved copy of the revoked slot still opens mail
    delivered meanwhile (the honest limit, docs/security.md); after it, nothing new."""
    created = await make_user(ALICE)
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    laptop = await add_app_password(engine, account, "laptop", crypto)
    phone = await add_app_password(engine, account, "phone", crypto)
    before = await deliver(engine, created.user.id, b"before the revocation")
    backup = copy_database(db_path, tmp_path / "backup")
    generation, credentials, pending = await generations(engine, created.user.id)
    assert not pending

    await revoke_app_password(engine, created.user.id, "laptop")  # no account: no key
    assert await generations(engine, created.user.id) == (generation, credentials + 1, True)
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw(laptop), crypto)
    meanwhile = await deliver(engine, created.user.id, b"before the next login")
    assert attack([backup, db_path], [laptop]).opens(meanwhile)  # not re-keyed yet

    now, slot = await unlock_account(engine, ALICE, pw(phone), crypto)  # any credential
    assert slot.kind == "app" and now.generation == generation + 1
    assert await generations(engine, created.user.id) == (generation + 1, credentials + 2, False)
    after = await deliver(engine, created.user.id, b"after the next login")
    assert read(now, after) == after.plaintext and read(now, before) == before.plaintext
    loot = attack([backup, db_path], [laptop])
    assert not loot.opens(after)
    assert loot.opens(before)
    again, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)  # no second re-key
    assert again.generation == generation + 1 and read(again, after) == after.plaintext
