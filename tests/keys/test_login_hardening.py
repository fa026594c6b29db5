"""Login hardening: weak hashes rehashed, equal KDF work, outside hash changes, races."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from dataclasses import replace

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import UnlockedAccounts, add_app_password, change_password, unlock_account
from cryptmail.keys._slots import hash_fingerprint, slots_of
from cryptmail.users import add_user, get_user, set_password_hash, verify_password
from keys.conftest import PASSWORD, MakeUser, other_tool_hash, pw

ALICE = "alice@example.org"
SLOT_KDF = {"unlock_slot", "lock_slot"}  # Argon2 at slot cost (burn_kdf runs lock_slot)


def legacy_hash(password: str, scheme: str) -> str:
    """What old ISPmail setups hold, including schemes cryptmail never writes."""
    if scheme == "PLAIN":
        return "{PLAIN}" + password
    if scheme == "SSHA512":
        salt = b"8bytesal"
        digest = hashlib.sha512(password.encode() + salt).digest()
        return "{SSHA512}" + base64.b64encode(digest + salt).decode()
    return other_tool_hash(password, scheme)


async def _ispmail_row(engine: AsyncEngine, scheme: str) -> None:
    async with engine.begin() as conn:
        await add_user(conn, ALICE, legacy_hash(PASSWORD, scheme))


@pytest.mark.parametrize(
    "scheme", ["PLAIN", "SSHA512", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT"]
)
async def test_weak_hash_is_rehashed_to_argon2id_at_login(
    engine: AsyncEngine, crypto: CryptoConfig, scheme: str
) -> None:
    await _ispmail_row(engine, scheme)
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)  # first login makes keys
    async with engine.connect() as conn:
        user = await get_user(conn, ALICE)
        slots = await slots_of(conn, user.id)
    assert user.password_hash.startswith("{ARGON2ID}$argon2id$")
    assert verify_password(user.password_hash, pw(PASSWORD))  # what Dovecot would check
    password_slot = next(s for s in slots if s.kind == "password")
    assert password_slot.hash_fingerprint == hash_fingerprint(user.password_hash)
    # And the next login takes the fast way (one slot unlock, no rehash).
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)


async def test_rehash_can_be_switched_off(engine: AsyncEngine, crypto: CryptoConfig) -> None:
    await _ispmail_row(engine, "BLF-CRYPT")
    async with engine.connect() as conn:
        guide_row = (await get_user(conn, ALICE)).password_hash
    assert guide_row.startswith("{BLF-CRYPT}")
    keep = replace(crypto, rehash_weak_hashes=False)
    for _ in range(2):  # the first login makes keys, the second takes the usual way
        await unlock_account(engine, ALICE, pw(PASSWORD), keep)
        async with engine.connect() as conn:
            assert (await get_user(conn, ALICE)).password_hash == guide_row


async def test_weak_hash_set_outside_is_rehashed_and_adopted(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, kdf_calls: list[str]
) -> None:
    new = await make_user()
    async with engine.begin() as conn:
        await set_password_hash(conn, new.user.id, other_tool_hash(PASSWORD, "SHA512-CRYPT"))
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    async with engine.connect() as conn:
        user = await get_user(conn, ALICE)
    assert user.password_hash.startswith("{ARGON2ID}")
    kdf_calls.clear()
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    assert kdf_calls == ["unlock_slot"]


async def test_strong_hash_is_left_alone(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    new = await make_user()
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    async with engine.connect() as conn:
        assert (await get_user(conn, ALICE)).password_hash == new.user.password_hash


async def test_every_failure_spends_one_slot_kdf(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, kdf_calls: list[str]
) -> None:
    await make_user()
    async with engine.begin() as conn:
        await add_user(conn, "bob@example.org", legacy_hash(PASSWORD, "PLAIN"))
    cases = [(ALICE, "wrong"), ("nobody@example.org", PASSWORD), ("bob@example.org", "wrong")]
    for email, password in cases:
        kdf_calls.clear()
        with pytest.raises(AuthenticationFailed):
            await unlock_account(engine, email, pw(password), crypto)
        assert len([c for c in kdf_calls if c in SLOT_KDF]) == 1, (email, kdf_calls)


async def test_outside_hash_change_beats_the_cache_and_app_passwords(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    new = await make_user()
    account, _ = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    app_password = await add_app_password(engine, account, "phone", crypto)
    cache = UnlockedAccounts(engine, crypto)
    held = await cache.acquire(ALICE, pw(PASSWORD))
    held_app = await cache.acquire(ALICE, pw(app_password))
    async with engine.begin() as conn:  # an ISPmail admin resets the password in SQL
        await set_password_hash(conn, new.user.id, other_tool_hash("new secret"))
    with pytest.raises(AuthenticationFailed):
        await cache.acquire(ALICE, pw(PASSWORD))
    with pytest.raises(AuthenticationFailed):
        await cache.acquire(ALICE, pw(app_password))
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw(app_password), crypto)
    cache.release(held)
    cache.release(held_app)


async def test_password_change_drops_cached_credentials(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    await make_user()
    cache = UnlockedAccounts(engine, crypto)
    held = await cache.acquire(ALICE, pw(PASSWORD))
    await change_password(engine, ALICE, pw(PASSWORD), pw("new secret"), crypto, cache=cache)
    with pytest.raises(AuthenticationFailed):
        await cache.acquire(ALICE, pw(PASSWORD))
    again = await cache.acquire(ALICE, pw("new secret"))
    # The change re-keyed the account: a new login gets the new generation's keys, and
    # the live session keeps the account it holds until it ends.
    assert again is not held and again.generation == held.generation + 1
    cache.release(again)
    cache.release(held)


async def test_concurrent_first_logins_share_one_set_of_keys(
    engine: AsyncEngine, crypto: CryptoConfig
) -> None:
    await _ispmail_row(engine, "BLF-CRYPT")
    results = await asyncio.gather(
        *(unlock_account(engine, ALICE, pw(PASSWORD), crypto) for _ in range(2))
    )
    assert results[0][0].account_uuid == results[1][0].account_uuid
    assert results[0][0].active_key.key_id == results[1][0].active_key.key_id
