"""recover and renew_recovery_code: the code sets a new password once, then a new code
takes its place; any wrong input changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.db import tables as t
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import (
    ensure_recovery_code,
    has_recovery_code,
    recover,
    renew_recovery_code,
    unlock_account,
)
from cryptmail.keys._slots import hash_fingerprint
from cryptmail.users import add_user, get_user, verify_password
from keys.conftest import PASSWORD, MakeUser, other_tool_hash, pw, snapshot

ALICE = "alice@example.org"
NEW = "a brand new passphrase"


async def test_recover_sets_password_and_replaces_the_code(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    new = await make_user()
    assert new.recovery_code is not None
    before, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)

    fresh = await recover(engine, ALICE, new.recovery_code, pw(NEW), crypto)
    assert fresh != new.recovery_code
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
    assert slot.hash_fingerprint == hash_fingerprint(user.password_hash)

    with pytest.raises(AuthenticationFailed):  # used up
        await recover(engine, ALICE, new.recovery_code, pw("again"), crypto)
    # Typed by hand: lower case, spaces, look-alike digits are forgiven.
    typed = fresh.lower().replace("-", " ").replace("o", "0")
    await recover(engine, ALICE, typed, pw("third"), crypto)
    await unlock_account(engine, ALICE, pw("third"), crypto)


@pytest.mark.parametrize(
    ("email", "code"),
    [
        (ALICE, "AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"),
        (ALICE, "not a code!"),
        (ALICE, ""),
        ("nobody@example.org", "AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"),
    ],
)
async def test_wrong_code_changes_nothing(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, email: str, code: str
) -> None:
    await make_user()
    before = await snapshot(engine)
    with pytest.raises(AuthenticationFailed):
        await recover(engine, email, code, pw(NEW), crypto)
    assert await snapshot(engine) == before


async def test_real_code_of_another_user_fails(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    await make_user()
    bob = await make_user("bob@example.org")
    assert bob.recovery_code is not None
    before = await snapshot(engine)
    with pytest.raises(AuthenticationFailed):
        await recover(engine, ALICE, bob.recovery_code, pw(NEW), crypto)
    assert await snapshot(engine) == before


async def test_renew_recovery_code(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    new = await make_user()
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    code = await renew_recovery_code(engine, account, crypto)
    assert code != new.recovery_code
    assert new.recovery_code is not None
    with pytest.raises(AuthenticationFailed):
        await recover(engine, ALICE, new.recovery_code, pw(NEW), crypto)
    await recover(engine, ALICE, code, pw(NEW), crypto)


async def test_renew_gives_a_code_to_a_user_without_one(
    engine: AsyncEngine, crypto: CryptoConfig
) -> None:
    async with engine.begin() as conn:
        user = await add_user(conn, "legacy@example.org", other_tool_hash(PASSWORD))
    account, _slot = await unlock_account(engine, "legacy@example.org", pw(PASSWORD), crypto)
    assert not await has_recovery_code(engine, user.id)
    code = await renew_recovery_code(engine, account, crypto)
    assert await has_recovery_code(engine, user.id)
    await recover(engine, "legacy@example.org", code, pw(NEW), crypto)
    await unlock_account(engine, "legacy@example.org", pw(NEW), crypto)


async def test_a_first_login_user_gets_a_code_once_the_account_is_unlocked(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    """Keys made at the first login come without a recovery code; `ensure_recovery_code`
    (the web sign-in) makes one, once, and it opens the account."""
    legacy = "legacy@example.org"
    async with engine.begin() as conn:
        user = await add_user(conn, legacy, other_tool_hash(PASSWORD, "SHA512-CRYPT"), crypt=2)
    account, _slot = await unlock_account(engine, legacy, pw(PASSWORD), crypto)  # keys made
    assert not await has_recovery_code(engine, user.id)
    code = await ensure_recovery_code(engine, account, crypto)
    assert code is not None and await has_recovery_code(engine, user.id)
    assert await ensure_recovery_code(engine, account, crypto) is None  # has one now
    await recover(engine, legacy, code, pw(NEW), crypto)
    await unlock_account(engine, legacy, pw(NEW), crypto)


async def test_no_code_is_made_for_a_stale_account(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    """Re-keyed since it was unlocked (a password change elsewhere): the next sign-in
    makes the code, not this one."""
    new = await make_user()
    stale, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    await recover(engine, ALICE, new.recovery_code or "", pw(NEW), crypto)  # re-keys
    async with engine.begin() as conn:
        await conn.execute(t.cm_key_slots.delete().where(t.cm_key_slots.c.kind == "recovery"))
    assert await ensure_recovery_code(engine, stale, crypto) is None
    assert not await has_recovery_code(engine, new.user.id)
    fresh, _slot = await unlock_account(engine, ALICE, pw(NEW), crypto)
    assert await ensure_recovery_code(engine, fresh, crypto) is not None
