"""Failing logins cost the same for every kind of address (keys/_timing.py).

No timing is asserted (machines are noisy): each failing path is shown to do the same
KDF work, one stored-hash check and one Argon2id, and to wait for the floor.
bench/login_timing.py measures; docs/security.md has its numbers.
"""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.db import tables as t
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import _timing as timing
from cryptmail.keys import change_password, unlock_account
from cryptmail.users import add_user, hash_password, set_password_hash
from keys.conftest import PASSWORD, MakeUser, other_tool_hash, pw

WRONG = "a wrong password 1"
HASH_CHECK = "_verify_sync"
ARGON2ID = {"unlock_slot", "lock_slot"}  # a slot opened, or burn_kdf


def kinds(calls: list[str]) -> Counter[str]:
    return Counter(
        "hash check" if c == HASH_CHECK else "argon2id" if c in ARGON2ID else c for c in calls
    )


async def add_rows(engine: AsyncEngine, make_user: MakeUser) -> None:
    await make_user("keyed@example.org")
    changed = await make_user("changed@example.org")
    missing = await make_user("noslot@example.org")
    secret = pw(PASSWORD)
    bcrypt = hash_password(secret, "BLF-CRYPT", bcrypt_cost=4)
    async with engine.begin() as conn:
        await add_user(conn, "bcrypt@example.org", bcrypt)
        await add_user(conn, "sha512@example.org", other_tool_hash(PASSWORD, "SHA512-CRYPT"))
        # An admin reset the hash outside cryptmail: the slot does not go with it yet.
        await set_password_hash(conn, changed.user.id, other_tool_hash(PASSWORD, "SHA512-CRYPT"))
        slots = t.cm_key_slots
        await conn.execute(slots.delete().where(slots.c.user_id == missing.user.id))


ADDRESSES = [
    "nobody@example.org",  # unknown
    "keyed@example.org",  # a user with keys, wrong password
    "bcrypt@example.org",  # an ISPmail row without keys yet, bcrypt
    "sha512@example.org",  # the same, SHA512-CRYPT
    "changed@example.org",  # keys, hash changed outside
    "noslot@example.org",  # keys but no password slot
]


@pytest.fixture
def pads(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Each sleep a failing check asks for, instead of sleeping."""
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("cryptmail.keys._timing.sleep", record)
    return slept


async def test_every_failing_login_does_the_same_kdf_work_and_waits_for_the_floor(
    engine: AsyncEngine,
    crypto: CryptoConfig,
    make_user: MakeUser,
    kdf_calls: list[str],
    pads: list[float],
) -> None:
    await add_rows(engine, make_user)
    timing.seed_cover(engine, other_tool_hash("cover"), 3600.0)  # every path sleeps
    for address in ADDRESSES:
        for attempt in ("login", "password change"):
            kdf_calls.clear()
            pads.clear()
            with pytest.raises(AuthenticationFailed):
                if attempt == "login":
                    await unlock_account(engine, address, pw(WRONG), crypto)
                else:
                    await change_password(engine, address, pw(WRONG), pw("new one 12345"), crypto)
            assert kinds(kdf_calls) == {"hash check": 1, "argon2id": 1}, (address, attempt)
            assert len(pads) == 1 and pads[0] > 3000, (address, attempt)


async def test_a_right_password_is_not_padded(
    engine: AsyncEngine,
    crypto: CryptoConfig,
    make_user: MakeUser,
    kdf_calls: list[str],
    pads: list[float],
) -> None:
    await make_user("keyed@example.org")
    timing.seed_cover(engine, other_tool_hash("cover"), 3600.0)
    kdf_calls.clear()
    await unlock_account(engine, "keyed@example.org", pw(PASSWORD), crypto)
    assert pads == [] and kinds(kdf_calls) == {"argon2id": 1}


async def test_the_cover_is_a_hash_of_a_row_without_keys(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, pads: list[float]
) -> None:
    await add_rows(engine, make_user)
    async with engine.connect() as conn:
        keyless = {
            h
            for (h,) in await conn.execute(
                t.virtual_users.select()
                .with_only_columns(t.virtual_users.c.password)
                .where(t.virtual_users.c.email.in_(["bcrypt@example.org", "sha512@example.org"]))
            )
        }
    timing.forget_cover(engine)
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, "nobody@example.org", pw(WRONG), crypto)
    cover = timing._covers[engine]
    assert cover.password_hash in keyless
    assert 0 < cover.floor_s <= timing.MAX_FLOOR_S


async def test_without_rows_lacking_keys_the_cover_is_an_argon2id_hash_at_slot_cost(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, pads: list[float]
) -> None:
    await make_user("keyed@example.org")
    timing.forget_cover(engine)
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, "keyed@example.org", pw(WRONG), crypto)
    cover = timing._covers[engine].password_hash
    assert cover.startswith("{ARGON2ID}") and f"m={crypto.argon2.memory_kib}," in cover


def test_the_dearest_hash_of_a_scheme_is_the_one_with_the_highest_cost() -> None:
    secret = pw(PASSWORD)
    assert timing.cost_hint(hash_password(secret, "BLF-CRYPT", bcrypt_cost=11)) > (
        timing.cost_hint(hash_password(secret, "BLF-CRYPT", bcrypt_cost=5))
    )
    assert timing.cost_hint("{SHA512-CRYPT}$6$rounds=656000$salt$x") > timing.cost_hint(
        "{SHA512-CRYPT}$6$rounds=5000$salt$x"
    )
    assert timing.cost_hint(other_tool_hash("x")) > 0
    assert timing.cost_hint("{PLAIN}x") == 0


async def test_a_slower_failure_raises_the_floor_a_step(
    engine: AsyncEngine, crypto: CryptoConfig, pads: list[float]
) -> None:
    timing.seed_cover(engine, other_tool_hash("cover"), 0.0)
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, "nobody@example.org", pw(WRONG), crypto)
    floor = timing._covers[engine].floor_s
    assert pads == [] and 0 < floor <= timing.MAX_FLOOR_S
