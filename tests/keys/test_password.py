"""change_password: the slot and the hash change together; a wrong old password changes
nothing; the recovery code and app passwords keep working."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import add_app_password, change_password, recover, unlock_account
from cryptmail.keys._slots import hash_fingerprint, slots_of
from cryptmail.users import add_user, get_user, verify_password
from keys.conftest import PASSWORD, MakeUser, other_tool_hash, pw, snapshot

ALICE = "alice@example.org"
NEW = "a brand new passphrase"


async def test_change_password(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    new = await make_user()
    before, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    await change_password(engine, ALICE, pw(PASSWORD), pw(NEW), crypto)

    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    after, slot = await unlock_account(engine, ALICE, pw(NEW), crypto)
    assert after.account_key == before.account_key  # re-locked, not re-keyed
    async with engine.connect() as conn:
        user = await get_user(conn, ALICE)
    assert verify_password(user.password_hash, pw(NEW))
    assert not verify_password(user.password_hash, pw(PASSWORD))
    assert slot.hash_fingerprint == hash_fingerprint(user.password_hash)
    # The recovery code still opens the same key.
    assert new.recovery_code is not None
    await recover(engine, ALICE, new.recovery_code, pw("third one"), crypto)


async def test_app_password_survives_a_password_change(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    await make_user()
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    secret = await add_app_password(engine, account, "phone", crypto)
    await change_password(engine, ALICE, pw(PASSWORD), pw(NEW), crypto)
    _account, slot = await unlock_account(engine, ALICE, pw(secret), crypto)
    assert slot.kind == "app"


@pytest.mark.parametrize("old", ["wrong password", "", "use the app password"])
async def test_wrong_old_password_changes_nothing(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, old: str
) -> None:
    await make_user()
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    if old == "use the app password":
        old = await add_app_password(engine, account, "phone", crypto)
    before = await snapshot(engine)
    with pytest.raises(AuthenticationFailed):
        await change_password(engine, ALICE, pw(old), pw(NEW), crypto)
    assert await snapshot(engine) == before
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)


async def test_unknown_user_is_authentication_failed(
    engine: AsyncEngine, crypto: CryptoConfig
) -> None:
    with pytest.raises(AuthenticationFailed):
        await change_password(engine, "nobody@example.org", pw(PASSWORD), pw(NEW), crypto)


async def test_first_change_of_an_ispmail_row_makes_keys(
    engine: AsyncEngine, crypto: CryptoConfig
) -> None:
    """A user without keys changes the password: keys are made with the old one first."""
    async with engine.begin() as conn:
        user = await add_user(conn, "legacy@example.org", other_tool_hash(PASSWORD))
    await change_password(engine, "legacy@example.org", pw(PASSWORD), pw(NEW), crypto)
    await unlock_account(engine, "legacy@example.org", pw(NEW), crypto)
    async with engine.connect() as conn:
        assert [s.kind for s in await slots_of(conn, user.id)] == ["password"]
