"""UnlockedAccounts: parallel sessions share one unlock; changes elsewhere apply at once."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import (
    UnlockedAccounts,
    add_app_password,
    change_password,
    revoke_app_password,
    unlock_account,
)
from keys.conftest import PASSWORD, MakeUser, pw

ALICE = "alice@example.org"


async def test_second_session_runs_no_argon2(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, kdf_calls: list[str]
) -> None:
    await make_user()
    cache = UnlockedAccounts(engine, crypto)
    kdf_calls.clear()
    first = await cache.acquire(ALICE, pw(PASSWORD))
    assert kdf_calls == ["unlock_slot"]
    kdf_calls.clear()
    second = await cache.acquire("Alice@Example.org", pw(PASSWORD))
    assert kdf_calls == []
    assert second is first
    assert cache.live_accounts == 1
    cache.release(first)
    assert cache.live_accounts == 1
    cache.release(second)
    assert cache.live_accounts == 0
    await cache.acquire(ALICE, pw(PASSWORD))  # after the last session: unlock again
    assert kdf_calls == ["unlock_slot"]


async def test_wrong_password_is_not_served_from_the_cache(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    await make_user()
    cache = UnlockedAccounts(engine, crypto)
    await cache.acquire(ALICE, pw(PASSWORD))
    with pytest.raises(AuthenticationFailed):
        await cache.acquire(ALICE, pw(PASSWORD + " "))
    with pytest.raises(AuthenticationFailed):
        await cache.acquire("bob@example.org", pw(PASSWORD))


async def test_revoked_app_password_fails_at_once(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    new = await make_user()
    cache = UnlockedAccounts(engine, crypto)
    account = await cache.acquire(ALICE, pw(PASSWORD))
    secret = await add_app_password(engine, account, "phone", crypto)
    await cache.acquire(ALICE, pw(secret))
    await cache.acquire(ALICE, pw(secret))  # served from the cache
    await revoke_app_password(engine, new.user.id, "phone")
    with pytest.raises(AuthenticationFailed):
        await cache.acquire(ALICE, pw(secret))
    assert await cache.acquire(ALICE, pw(PASSWORD)) is account


async def test_password_changed_by_another_process_applies_at_once(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    await make_user()
    cache = UnlockedAccounts(engine, crypto)
    await cache.acquire(ALICE, pw(PASSWORD))
    await change_password(engine, ALICE, pw(PASSWORD), pw("changed elsewhere"), crypto)
    with pytest.raises(AuthenticationFailed):
        await cache.acquire(ALICE, pw(PASSWORD))
    await cache.acquire(ALICE, pw("changed elsewhere"))


async def test_forget_drops_cached_credentials(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, kdf_calls: list[str]
) -> None:
    await make_user()
    cache = UnlockedAccounts(engine, crypto)
    await cache.acquire(ALICE, pw(PASSWORD))
    cache.forget("ALICE@example.org")
    kdf_calls.clear()
    await cache.acquire(ALICE, pw(PASSWORD))
    assert kdf_calls == ["unlock_slot"]
    # The account is still shared with the earlier session.
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    assert account.account_key == (await cache.acquire(ALICE, pw(PASSWORD))).account_key


async def test_failed_logins_leave_nothing_behind(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    await make_user()
    cache = UnlockedAccounts(engine, crypto)
    for n in range(3):
        with pytest.raises(AuthenticationFailed):
            await cache.acquire(f"made-up-{n}@example.org", pw(PASSWORD))
    with pytest.raises(AuthenticationFailed):
        await cache.acquire(ALICE, pw("wrong"))
    assert cache._locks == {} and cache._waiting == {}
    account = await cache.acquire(ALICE, pw(PASSWORD))
    assert list(cache._locks) == [ALICE]
    cache.release(account)
    assert cache._locks == {} and cache.live_accounts == 0


async def test_parallel_logins_share_one_unlock(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, kdf_calls: list[str]
) -> None:
    import asyncio

    await make_user()
    cache = UnlockedAccounts(engine, crypto)
    kdf_calls.clear()
    accounts = await asyncio.gather(*(cache.acquire(ALICE, pw(PASSWORD)) for _ in range(5)))
    assert kdf_calls == ["unlock_slot"]
    assert all(a is accounts[0] for a in accounts)
    for account in accounts:
        cache.release(account)
    assert cache.live_accounts == 0 and cache._locks == {} and cache._waiting == {}


def test_cache_entry_repr_hides_slot_records() -> None:
    from cryptmail.keys._cache import _Entry

    entry = _Entry(account=None, credentials={b"tag": (1, b"slot-record-0d4e")})  # type: ignore[arg-type]  # repr needs no account
    assert "slot-record-0d4e" not in repr(entry)
