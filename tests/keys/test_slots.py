"""Key slot rows: bound to their account, their work factor checked before any Argon2."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.db import tables as t
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import unlock_account
from cryptmail.users import get_user
from keys.conftest import PASSWORD, MakeUser, pw

ALICE = "alice@example.org"


async def _password_record(engine: AsyncEngine, email: str) -> tuple[int, bytes]:
    async with engine.connect() as conn:
        user = await get_user(conn, email)
        row = (
            await conn.execute(
                select(t.cm_key_slots.c.id, t.cm_key_slots.c.record).where(
                    t.cm_key_slots.c.user_id == user.id, t.cm_key_slots.c.kind == "password"
                )
            )
        ).one()
    return int(row.id), bytes(row.record)


async def _set_record(engine: AsyncEngine, slot_id: int, record: bytes) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(t.cm_key_slots).where(t.cm_key_slots.c.id == slot_id).values(record=record)
        )


async def test_a_slot_copied_to_another_account_does_not_open(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    await make_user()
    await make_user("bob@example.org", "bob's own password")
    _alice_id, alice_record = await _password_record(engine, ALICE)
    bob_id, _bob_record = await _password_record(engine, "bob@example.org")
    await _set_record(engine, bob_id, alice_record)
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, "bob@example.org", pw(PASSWORD), crypto)


async def test_planted_work_factor_is_refused_before_argon2(
    engine: AsyncEngine,
    crypto: CryptoConfig,
    make_user: MakeUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cryptmail.concurrency

    await make_user()
    slot_id, record = await _password_record(engine, ALICE)
    version, _memory, time_cost, lanes = struct.unpack_from(">BIIB", record)
    planted = struct.pack(">BIIB", version, 100 * 1024 * 1024, time_cost, lanes) + record[10:]
    await _set_record(engine, slot_id, planted)

    calls: list[str] = []
    real = cryptmail.concurrency.run_kdf

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        calls.append(func.__name__)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr("cryptmail.keys._kdf.run_kdf", counting)
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    assert "unlock_slot" not in calls


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
async def test_damaged_slot_fails_like_a_wrong_password(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, damage: str
) -> None:
    await make_user()
    slot_id, record = await _password_record(engine, ALICE)
    broken = record[:-1] if damage == "truncated" else record[:-1] + bytes([record[-1] ^ 1])
    await _set_record(engine, slot_id, broken)
    with pytest.raises(AuthenticationFailed) as caught:
        await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    assert str(caught.value) == "authentication failed"


async def test_the_sql_hash_costs_as_much_as_a_slot(
    engine: AsyncEngine, make_user: MakeUser
) -> None:
    """The hash in virtual_users is an offline target too: it is no weaker than a slot."""
    await make_user()
    async with engine.connect() as conn:
        user = await get_user(conn, ALICE)
    assert user.password_hash.startswith("{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=2$")
