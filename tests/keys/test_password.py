"""change_password: the slot and the hash change together; a wrong old password changes
nothing; the recovery code and app passwords keep working."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import add_app_password, change_password, recover, unlock_account
from cryptmail.keys._slots import hash_fingerprint, slots_of
from cryptmail.users import add_user, get_user, set_password_hash, verify_password
from keys.conftest import PASSWORD, MakeUser, Writes, other_tool_hash, pw, snapshot

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
    # Re-keyed (was: re-locked, the finding "the account key never changes"): a new
    # account key and active key pair; the old private keys come along, re-sealed.
    assert after.account_key != before.account_key
    assert after.active_key != before.active_key
    assert set(before.private_keys) < set(after.private_keys)
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


async def test_changing_a_legacy_hash_costs_two_argon2_and_one_write(
    engine: AsyncEngine, crypto: CryptoConfig, argon2_runs: list[str], writes: Writes
) -> None:
    """An ISPmail row with a {SHA512-CRYPT} hash and no keys: the old password is checked
    against the hash (no Argon2), the keys are made locked by the new password, and the
    new hash is written once, in the one transaction that stores the keys."""
    async with engine.begin() as conn:
        await add_user(conn, "legacy@example.org", other_tool_hash(PASSWORD, "SHA512-CRYPT"))
    argon2_runs.clear()
    writes.commits = writes.hash_updates = 0
    await change_password(engine, "legacy@example.org", pw(PASSWORD), pw(NEW), crypto)
    assert sorted(argon2_runs) == ["new hash", "slot key"]
    assert (writes.commits, writes.hash_updates) == (1, 1)
    async with engine.connect() as conn:
        user = await get_user(conn, "legacy@example.org")
        slots = await slots_of(conn, user.id)
    assert user.password_hash.startswith("{ARGON2ID}")
    assert [s.hash_fingerprint for s in slots] == [hash_fingerprint(user.password_hash)]
    await unlock_account(engine, "legacy@example.org", pw(NEW), crypto)


async def test_changing_a_legacy_hash_of_a_user_with_keys_writes_the_hash_once(
    engine: AsyncEngine,
    crypto: CryptoConfig,
    make_user: MakeUser,
    argon2_runs: list[str],
    writes: Writes,
) -> None:
    """A user with keys whose hash an outside tool set to {SHA512-CRYPT}: the old password
    is checked against that hash (no Argon2) and opens the slot; the old password is not
    rehashed first. Three Argon2 is the floor here: opening the old slot, locking the new
    one and the new {ARGON2ID} hash (one derivation cannot serve both the slot key and a
    hash that the SQL row shows, or the row would open the slot)."""
    new = await make_user()
    async with engine.begin() as conn:
        await set_password_hash(conn, new.user.id, other_tool_hash(PASSWORD, "SHA512-CRYPT"))
    argon2_runs.clear()
    writes.commits = writes.hash_updates = 0
    await change_password(engine, ALICE, pw(PASSWORD), pw(NEW), crypto)
    assert sorted(argon2_runs) == ["new hash", "slot key", "slot key"]
    assert (writes.commits, writes.hash_updates) == (1, 1)
    _account, slot = await unlock_account(engine, ALICE, pw(NEW), crypto)
    async with engine.connect() as conn:
        assert slot.hash_fingerprint == hash_fingerprint(
            (await get_user(conn, ALICE)).password_hash
        )
