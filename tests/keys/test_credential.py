"""open_account_key: the credential check alone; it opens the key and writes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import (
    add_app_password,
    open_account_key,
    open_private_keys,
    unlock_account,
    verify_login,
)
from cryptmail.users import add_user, set_password_hash
from keys.conftest import PASSWORD, MakeUser, other_tool_hash, pw, snapshot

ALICE = "alice@example.org"


async def test_opens_the_key_and_writes_nothing(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, kdf_calls: list[str]
) -> None:
    new = await make_user()
    async with engine.begin() as conn:  # a weak hash written outside: a login would rehash
        await set_password_hash(conn, new.user.id, other_tool_hash(PASSWORD, "SHA512-CRYPT"))
    before = await snapshot(engine)
    kdf_calls.clear()
    opened = await open_account_key(engine, ALICE, pw(PASSWORD), crypto)
    assert kdf_calls == ["_verify_sync", "unlock_slot"]
    assert await snapshot(engine) == before
    assert opened.slot.kind == "password" and opened.hash_checked
    account = await open_private_keys(engine, opened)
    unlocked, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    assert account.account_key == unlocked.account_key
    assert account.private_keys.keys() == unlocked.private_keys.keys()
    assert "SecretBytes" not in repr(opened) and "user_id=" in repr(opened)


async def test_app_passwords_only_when_allowed(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    await make_user()
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    secret = await add_app_password(engine, account, "phone", crypto)
    with pytest.raises(AuthenticationFailed):
        await open_account_key(engine, ALICE, pw(secret), crypto)
    opened = await open_account_key(engine, ALICE, pw(secret), crypto, allow_app_password=True)
    assert opened.slot.kind == "app"
    assert (await verify_login(engine, ALICE, pw(secret), crypto)).slot.kind == "app"


async def test_a_user_without_keys_is_not_given_any(
    engine: AsyncEngine, crypto: CryptoConfig
) -> None:
    async with engine.begin() as conn:
        await add_user(conn, "legacy@example.org", other_tool_hash(PASSWORD))
    before = await snapshot(engine)
    with pytest.raises(AuthenticationFailed):
        await open_account_key(engine, "legacy@example.org", pw(PASSWORD), crypto)
    assert await snapshot(engine) == before
    opened = await verify_login(engine, "legacy@example.org", pw(PASSWORD), crypto)
    assert opened.slot.kind == "password"  # a login makes them
