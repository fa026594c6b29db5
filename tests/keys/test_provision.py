"""create_user and provision_keys: hash, account, key pair and slots in one transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig, Curve
from cryptmail.db import tables as t
from cryptmail.errors import UnknownDomain, UserExists
from cryptmail.keys import create_user, has_recovery_code, list_key_pairs, unlock_account
from cryptmail.keys._slots import hash_fingerprint, slots_of
from cryptmail.secret import Password
from cryptmail.users import get_user, verify_password
from keys.conftest import PASSWORD, MakeUser


async def _count(engine: AsyncEngine, table: object) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def test_create_user_makes_hash_keys_and_two_slots(
    engine: AsyncEngine, make_user: MakeUser
) -> None:
    new = await make_user()
    assert new.recovery_code is not None
    assert new.recovery_code not in repr(new)
    async with engine.connect() as conn:
        user = await get_user(conn, "Alice@Example.org")
        slots = await slots_of(conn, user.id)
        pairs = await list_key_pairs(conn, user.id)
    assert user.id == new.user.id and user.crypt == 2
    assert user.password_hash.startswith("{ARGON2ID}")
    assert verify_password(user.password_hash, Password.from_str(PASSWORD))
    assert sorted(s.kind for s in slots) == ["password", "recovery"]
    password_slot = next(s for s in slots if s.kind == "password")
    assert password_slot.hash_fingerprint == hash_fingerprint(user.password_hash)
    assert [(p.curve, p.active) for p in pairs] == [("x25519", True)]
    assert await has_recovery_code(engine, user.id)


@pytest.mark.parametrize("curve", ["x25519", "prime256v1", "secp384r1", "secp521r1"])
async def test_each_curve(engine: AsyncEngine, crypto: CryptoConfig, curve: Curve) -> None:
    crypto = CryptoConfig(curve=curve, argon2=crypto.argon2)
    new = await create_user(engine, "bob@example.org", Password.from_str(PASSWORD), crypto)
    account, _slot = await unlock_account(
        engine, "bob@example.org", Password.from_str(PASSWORD), crypto
    )
    assert account.active_key.curve == curve
    assert account.user.id == new.user.id


async def test_crypt_zero_is_stored(engine: AsyncEngine, make_user: MakeUser) -> None:
    new = await make_user("plain@example.org", crypt=0)
    async with engine.connect() as conn:
        assert (await get_user(conn, "plain@example.org")).crypt == 0
    assert new.user.crypt == 0


async def test_duplicate_user_leaves_nothing_behind(
    engine: AsyncEngine, make_user: MakeUser
) -> None:
    await make_user()
    before = [await _count(engine, table) for table in (t.cm_key_pairs, t.cm_key_slots)]
    with pytest.raises(UserExists):
        await make_user("ALICE@example.org")
    after = [await _count(engine, table) for table in (t.cm_key_pairs, t.cm_key_slots)]
    assert before == after


async def test_unknown_domain_is_refused_before_any_row(
    engine: AsyncEngine, make_user: MakeUser
) -> None:
    with pytest.raises(UnknownDomain):
        await make_user("alice@example.net")
    for table in (t.virtual_users, t.cm_accounts, t.cm_key_pairs, t.cm_key_slots):
        assert await _count(engine, table) == 0
