"""unlock_account: passwords, app passwords, ISPmail rows without keys, outside hash changes."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.db import UserId
from cryptmail.db import tables as t
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import add_app_password, has_recovery_code, list_key_pairs, unlock_account
from cryptmail.keys._slots import hash_fingerprint, slots_of
from cryptmail.users import add_user, get_user, set_password_hash
from keys.conftest import PASSWORD, MakeUser, other_tool_hash, pw

ALICE = "alice@example.org"


async def test_password_unlocks(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    new = await make_user()
    account, slot = await unlock_account(engine, "ALICE@example.org", pw(PASSWORD), crypto)
    assert slot.kind == "password"
    assert account.user.id == new.user.id
    assert account.active_key.key_id in account.private_keys
    assert PASSWORD not in repr(account)


@pytest.mark.parametrize(
    ("email", "password"),
    [(ALICE, "wrong password"), ("nobody@example.org", PASSWORD), (ALICE, ""), (ALICE, "\xff")],
)
async def test_failures_look_the_same(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, email: str, password: str
) -> None:
    await make_user()
    with pytest.raises(AuthenticationFailed) as caught:
        await unlock_account(engine, email, pw(password), crypto)
    assert str(caught.value) == "authentication failed"


async def test_app_password_unlocks_unless_refused(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    await make_user()
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    secret = await add_app_password(engine, account, "phone", crypto)
    # Typed by hand: upper case, spaces instead of hyphens.
    for typed in (secret, secret.upper().replace("-", " ")):
        unlocked, slot = await unlock_account(engine, ALICE, pw(typed), crypto)
        assert (slot.kind, slot.name) == ("app", "phone")
        assert unlocked.active_key == account.active_key
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw(secret), crypto, allow_app_password=False)


async def test_app_password_of_another_user_fails(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    await make_user()
    await make_user("bob@example.org")
    bob, _slot = await unlock_account(engine, "bob@example.org", pw(PASSWORD), crypto)
    secret = await add_app_password(engine, bob, "laptop", crypto)
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw(secret), crypto)


async def _ispmail_row(engine: AsyncEngine, password_hash: str) -> UserId:
    async with engine.begin() as conn:
        user = await add_user(conn, "legacy@example.org", password_hash, crypt=2)
    return user.id


@pytest.mark.parametrize("scheme", ["ARGON2ID", "BLF-CRYPT", "SHA512-CRYPT"])
async def test_first_login_provisions_an_ispmail_row(
    engine: AsyncEngine, crypto: CryptoConfig, scheme: str
) -> None:
    user_id = await _ispmail_row(engine, other_tool_hash(PASSWORD, scheme))
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, "legacy@example.org", pw("not it"), crypto)
    async with engine.connect() as conn:
        assert await list_key_pairs(conn, user_id) == []

    account, slot = await unlock_account(engine, "legacy@example.org", pw(PASSWORD), crypto)
    assert slot.kind == "password"
    async with engine.connect() as conn:
        user = await get_user(conn, "legacy@example.org")
        pairs = await list_key_pairs(conn, user_id)
        slots = await slots_of(conn, user_id)
    # A cheap outside hash is rehashed to the slots' {ARGON2ID} at this login (H3).
    assert user.password_hash.startswith("{ARGON2ID}")
    assert [p.active for p in pairs] == [True]
    assert [s.kind for s in slots] == ["password"]
    assert slots[0].hash_fingerprint == hash_fingerprint(user.password_hash)
    assert not await has_recovery_code(engine, user_id)

    again, _slot = await unlock_account(engine, "legacy@example.org", pw(PASSWORD), crypto)
    assert again.active_key == account.active_key
    async with engine.connect() as conn:
        assert len(await list_key_pairs(conn, user_id)) == 1


async def test_hash_changed_outside_is_the_authority(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    """An admin tool sets a new hash: the old password is refused (the hash says no),
    and the new one cannot open a key it never locked. The recovery code can."""
    new = await make_user()
    async with engine.begin() as conn:
        await set_password_hash(conn, new.user.id, other_tool_hash("set by another tool"))
    for password in (PASSWORD, "set by another tool"):
        with pytest.raises(AuthenticationFailed):
            await unlock_account(engine, ALICE, pw(password), crypto)


async def test_hash_rewritten_outside_for_the_same_password(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    """Another tool re-hashes the same password (say, to BLF-CRYPT): login still works,
    the weak hash is replaced by {ARGON2ID}, and the slot learns that hash so later
    logins skip the extra check."""
    new = await make_user()
    rehashed = other_tool_hash(PASSWORD, "BLF-CRYPT")
    async with engine.begin() as conn:
        await set_password_hash(conn, new.user.id, rehashed)
    account, slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    assert account.user.password_hash.startswith("{ARGON2ID}")
    async with engine.connect() as conn:
        assert (await get_user(conn, ALICE)).password_hash == account.user.password_hash
        fingerprint = (
            await conn.execute(
                select(t.cm_key_slots.c.hash_fingerprint).where(t.cm_key_slots.c.id == slot.id)
            )
        ).scalar_one()
    assert bytes(fingerprint) == hash_fingerprint(account.user.password_hash)


async def test_recovery_code_is_not_a_login(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    new = await make_user()
    assert new.recovery_code is not None
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw(new.recovery_code), crypto)


async def test_missing_password_slot_fails_and_recovery_mends_it(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    """An account whose password slot is gone (a restore gone wrong): login fails plainly,
    and the recovery code still gets the user back in."""
    from sqlalchemy import delete

    from cryptmail.keys import recover

    new = await make_user()
    assert new.recovery_code is not None
    async with engine.begin() as conn:
        await conn.execute(
            delete(t.cm_key_slots).where(
                t.cm_key_slots.c.user_id == new.user.id, t.cm_key_slots.c.kind == "password"
            )
        )
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    await recover(engine, ALICE, new.recovery_code, pw("mended"), crypto)
    await unlock_account(engine, ALICE, pw("mended"), crypto)
