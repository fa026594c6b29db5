"""UnlockedAccounts: parallel sessions share one unlock, a repeated login within
`auth.cache_ttl_s` of the last session runs no Argon2; changes elsewhere apply at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig, load_config
from cryptmail.db import create_engine
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import (
    UnlockedAccounts,
    add_app_password,
    change_password,
    revoke_app_password,
    rotate_key_pair,
    unlock_account,
)
from cryptmail.keys._generation import bump_generation
from hand_clock import HandClock
from keys.conftest import PASSWORD, MakeUser, pw

ALICE = "alice@example.org"


async def test_second_session_runs_no_argon2(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, kdf_calls: list[str]
) -> None:
    await make_user()
    cache = UnlockedAccounts(engine, crypto, ttl_s=0)
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
    await cache.acquire(ALICE, pw(PASSWORD))  # after the last session, ttl 0: unlock again
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
    # The password still works. Revoked without the key, the account is re-keyed at this
    # login (keys/_app_passwords.py): a new account, held in the cache entry from now on.
    again = await cache.acquire(ALICE, pw(PASSWORD))
    assert again.user == account.user and again.generation == account.generation + 1
    assert await cache.acquire(ALICE, pw(PASSWORD)) is again


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
    cache = UnlockedAccounts(engine, crypto, ttl_s=0)
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
    cache = UnlockedAccounts(engine, crypto, ttl_s=0)
    kdf_calls.clear()
    accounts = await asyncio.gather(*(cache.acquire(ALICE, pw(PASSWORD)) for _ in range(5)))
    assert kdf_calls == ["unlock_slot"]
    assert all(a is accounts[0] for a in accounts)
    for account in accounts:
        cache.release(account)
    assert cache.live_accounts == 0 and cache._locks == {} and cache._waiting == {}


def test_cache_entry_repr_hides_slot_records() -> None:
    from cryptmail.keys._cache import _Entry, _Verifier
    from cryptmail.secret import SecretBytes

    verifier = _Verifier(SecretBytes(b"verifier-7c1a"), "password", 1, b"slot-record-0d4e")
    entry = _Entry(account=None, generation=0, verifiers=[verifier])  # type: ignore[arg-type]  # repr needs no account
    assert "slot-record-0d4e" not in repr(entry)
    assert "verifier-7c1a" not in repr(entry)


async def test_a_repeated_login_after_the_last_session_runs_no_argon2(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, kdf_calls: list[str]
) -> None:
    await make_user()
    cache = UnlockedAccounts(engine, crypto, ttl_s=300)
    first = await cache.acquire(ALICE, pw(PASSWORD))
    cache.release(first)
    assert cache.live_accounts == 0 and cache.cached_accounts == 1
    kdf_calls.clear()
    for _ in range(5):
        again = await cache.acquire(ALICE, pw(PASSWORD))
        assert again is first
        cache.release(again)
    assert kdf_calls == []


async def test_a_wrong_password_for_a_cached_user_costs_what_it_costs_without_the_cache(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, kdf_calls: list[str]
) -> None:
    await make_user()
    uncached = UnlockedAccounts(engine, crypto)
    kdf_calls.clear()
    with pytest.raises(AuthenticationFailed):
        await uncached.acquire(ALICE, pw("wrong password"))
    without_cache = list(kdf_calls)
    assert without_cache  # the full Argon2 check

    cache = UnlockedAccounts(engine, crypto)
    cache.release(await cache.acquire(ALICE, pw(PASSWORD)))
    kdf_calls.clear()
    with pytest.raises(AuthenticationFailed):
        await cache.acquire(ALICE, pw("wrong password"))
    assert kdf_calls == without_cache
    kdf_calls.clear()
    cache.release(await cache.acquire(ALICE, pw(PASSWORD)))  # the entry survives a failure
    assert kdf_calls == []


async def test_a_password_changed_by_another_process_ends_the_idle_entry(
    engine: AsyncEngine,
    crypto: CryptoConfig,
    make_user: MakeUser,
    kdf_calls: list[str],
    db_path: Path,
) -> None:
    await make_user()
    cache = UnlockedAccounts(engine, crypto)
    cache.release(await cache.acquire(ALICE, pw(PASSWORD)))
    other = create_engine(f"sqlite:///{db_path}")  # another process's connection pool
    try:
        await change_password(other, ALICE, pw(PASSWORD), pw("changed elsewhere"), crypto)
    finally:
        await other.dispose()
    kdf_calls.clear()
    with pytest.raises(AuthenticationFailed):
        await cache.acquire(ALICE, pw(PASSWORD))
    assert kdf_calls  # checked the full way, not served from memory
    kdf_calls.clear()
    cache.release(await cache.acquire(ALICE, pw("changed elsewhere")))
    assert kdf_calls == ["unlock_slot"]


async def test_a_generation_bumped_elsewhere_drops_the_entry(
    engine: AsyncEngine,
    crypto: CryptoConfig,
    make_user: MakeUser,
    kdf_calls: list[str],
    db_path: Path,
) -> None:
    """The generation alone decides: nothing else about the credentials changed."""
    new = await make_user()
    cache = UnlockedAccounts(engine, crypto)
    first = await cache.acquire(ALICE, pw(PASSWORD))
    cache.release(first)
    other = create_engine(f"sqlite:///{db_path}")
    try:
        async with other.begin() as conn:
            await bump_generation(conn, new.user.id)
    finally:
        await other.dispose()
    kdf_calls.clear()
    again = await cache.acquire(ALICE, pw(PASSWORD))
    assert kdf_calls == ["unlock_slot"]
    cache.release(again)
    kdf_calls.clear()
    cache.release(await cache.acquire(ALICE, pw(PASSWORD)))  # cached again, at the new one
    assert kdf_calls == []


async def test_a_key_rotation_ends_the_entry_and_the_next_login_has_the_new_key(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, kdf_calls: list[str]
) -> None:
    await make_user()
    cache = UnlockedAccounts(engine, crypto)
    first = await cache.acquire(ALICE, pw(PASSWORD))
    async with engine.begin() as conn:
        info = await rotate_key_pair(conn, first, "prime256v1")
    kdf_calls.clear()
    second = await cache.acquire(ALICE, pw(PASSWORD))  # while the first session is live
    assert kdf_calls == ["unlock_slot"]
    assert second.active_key.key_id == info.key_id
    assert first.active_key.key_id != info.key_id  # the open session keeps what it had
    cache.release(first)
    cache.release(second)
    kdf_calls.clear()
    third = await cache.acquire(ALICE, pw(PASSWORD))
    assert kdf_calls == [] and third is second


async def test_an_idle_entry_expires_after_the_ttl(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, kdf_calls: list[str]
) -> None:
    await make_user()
    clock = HandClock()
    cache = UnlockedAccounts(engine, crypto, ttl_s=300, clock=clock)
    cache.release(await cache.acquire(ALICE, pw(PASSWORD)))
    clock.now += 299
    kdf_calls.clear()
    cache.release(await cache.acquire(ALICE, pw(PASSWORD)))
    assert kdf_calls == []  # and the ttl starts again at this release
    clock.now += 299
    assert cache.purge() == 0 and cache.cached_accounts == 1
    clock.now += 2
    assert cache.purge() == 1 and cache.cached_accounts == 0
    assert cache._locks == {}
    cache.release(await cache.acquire(ALICE, pw(PASSWORD)))
    assert kdf_calls == ["unlock_slot"]
    clock.now += 301
    kdf_calls.clear()
    cache.release(await cache.acquire(ALICE, pw(PASSWORD)))  # expired, found lazily
    assert kdf_calls == ["unlock_slot"]


async def test_a_live_session_never_expires(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, kdf_calls: list[str]
) -> None:
    await make_user()
    clock = HandClock()
    cache = UnlockedAccounts(engine, crypto, ttl_s=300, clock=clock)
    held = await cache.acquire(ALICE, pw(PASSWORD))
    clock.now += 3600
    assert cache.purge() == 0
    kdf_calls.clear()
    assert await cache.acquire(ALICE, pw(PASSWORD)) is held
    assert kdf_calls == []


async def test_the_least_recently_used_idle_entries_go_first_beyond_the_cap(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, kdf_calls: list[str]
) -> None:
    users = ["alice@example.org", "bob@example.org", "carol@example.org"]
    for user in users:
        await make_user(user)
    clock = HandClock()
    cache = UnlockedAccounts(engine, crypto, max_users=2, clock=clock)
    held = await cache.acquire(users[0], pw(PASSWORD))  # live: never evicted
    for user in users[1:]:
        clock.now += 1
        cache.release(await cache.acquire(user, pw(PASSWORD)))
    assert cache.cached_accounts == 2
    kdf_calls.clear()
    cache.release(await cache.acquire(users[2], pw(PASSWORD)))
    assert kdf_calls == []
    cache.release(await cache.acquire(users[1], pw(PASSWORD)))  # bob was evicted
    assert kdf_calls == ["unlock_slot"]
    assert cache.cached_accounts == 2
    assert await cache.acquire(users[0], pw(PASSWORD)) is held


async def test_an_app_password_and_the_main_password_have_separate_verifiers(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, kdf_calls: list[str]
) -> None:
    await make_user()
    cache = UnlockedAccounts(engine, crypto)
    account = await cache.acquire(ALICE, pw(PASSWORD))
    secret = await add_app_password(engine, account, "phone", crypto)
    cache.release(account)
    cache.release(await cache.acquire(ALICE, pw(secret)))
    kdf_calls.clear()
    cache.release(await cache.acquire(ALICE, pw(secret)))
    cache.release(await cache.acquire(ALICE, pw(PASSWORD)))
    assert kdf_calls == []  # each its own verifier
    # Where app passwords are not allowed, the app password's verifier does not count:
    # the full check runs, and refuses it.
    with pytest.raises(AuthenticationFailed):
        await cache.acquire(ALICE, pw(secret), allow_app_password=False)
    assert kdf_calls
    kdf_calls.clear()
    cache.release(await cache.acquire(ALICE, pw(PASSWORD), allow_app_password=False))
    assert kdf_calls == []


async def test_ttl_zero_keeps_nothing_after_the_last_session(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    await make_user()
    cache = UnlockedAccounts(engine, crypto, ttl_s=0)
    cache.release(await cache.acquire(ALICE, pw(PASSWORD)))
    assert cache.cached_accounts == 0 and cache._locks == {}


async def test_from_config_takes_the_auth_settings(
    engine: AsyncEngine, crypto: CryptoConfig
) -> None:
    config = load_config(None, **{"auth.cache_ttl_s": 60, "auth.cache_max_users": 7})
    cache = UnlockedAccounts.from_config(engine, config)
    assert (cache.ttl_s, cache.max_users) == (60, 7)
