"""Authenticated key rows at unlock: a key pair, slot or `crypt` changed in SQL is found
(docs/security.md, "Authenticated key rows")."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.crypto import generate_private_key, public_info
from cryptmail.db import tables as t
from cryptmail.db import utcnow
from cryptmail.errors import AuthenticationFailed, KeyRowsTampered
from cryptmail.keys import (
    add_app_password,
    change_password,
    recover,
    revoke_app_password,
    unlock_account,
)
from cryptmail.keys._slots import slots_of
from keys.conftest import PASSWORD, MakeUser, pw

ALICE = "alice@example.org"


async def _events(engine: AsyncEngine, user_id: int) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(t.cm_key_events.c.event)
            .where(t.cm_key_events.c.user_id == user_id)
            .order_by(t.cm_key_events.c.id)
        )
        return [str(r.event) for r in rows]


async def _macs(engine: AsyncEngine, user_id: int) -> tuple[object, object]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(t.cm_accounts.c.key_mac, t.cm_accounts.c.delivery_mac).where(
                    t.cm_accounts.c.user_id == user_id
                )
            )
        ).one()
    return row.key_mac, row.delivery_mac


async def _forget_macs(engine: AsyncEngine) -> None:
    """The state of rows made before migration 0008."""
    async with engine.begin() as conn:
        await conn.execute(
            update(t.cm_accounts).values(key_mac=None, key_mac_slots=None, delivery_mac=None)
        )


async def _replace_public_key(engine: AsyncEngine, user_id: int) -> None:
    attacker = public_info(generate_private_key("x25519"))
    async with engine.begin() as conn:
        await conn.execute(
            update(t.cm_key_pairs)
            .where(t.cm_key_pairs.c.user_id == user_id, t.cm_key_pairs.c.active.is_(True))
            .values(key_id=attacker.key_id, public_key=attacker.encoded)
        )


async def test_new_users_have_both_macs(make_user: MakeUser, engine: AsyncEngine) -> None:
    created = await make_user(ALICE)
    key_mac, delivery_mac = await _macs(engine, created.user.id)
    assert key_mac is not None and delivery_mac is not None


async def test_a_public_key_replaced_in_sql_refuses_the_login_with_an_event(
    make_user: MakeUser,
    engine: AsyncEngine,
    crypto: CryptoConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    created = await make_user(ALICE)
    await _replace_public_key(engine, created.user.id)
    with pytest.raises(KeyRowsTampered) as refused:
        await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    assert isinstance(refused.value, AuthenticationFailed)  # every caller handles it
    assert (await _events(engine, created.user.id))[-1] == "key_rows_changed"
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("sign-in refused" in m for m in errors)
    assert not any(PASSWORD in m for m in errors)


async def test_a_public_key_replaced_in_rows_without_macs_is_refused_too(
    make_user: MakeUser, engine: AsyncEngine, crypto: CryptoConfig
) -> None:
    """Clearing the MACs does not turn the first unlock into a blessing of the attacker's
    key: it must belong to a private key the account key opens."""
    created = await make_user(ALICE)
    await _forget_macs(engine)
    await _replace_public_key(engine, created.user.id)
    with pytest.raises(KeyRowsTampered):
        await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    assert await _macs(engine, created.user.id) == (None, None)


async def test_rows_without_macs_are_sealed_at_the_first_unlock(
    make_user: MakeUser, engine: AsyncEngine, crypto: CryptoConfig
) -> None:
    created = await make_user(ALICE)
    await _forget_macs(engine)
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    key_mac, delivery_mac = await _macs(engine, created.user.id)
    assert key_mac is not None and delivery_mac is not None
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    await _replace_public_key(engine, created.user.id)  # from now on it is found
    with pytest.raises(KeyRowsTampered):
        await unlock_account(engine, ALICE, pw(PASSWORD), crypto)


async def test_a_slot_added_in_sql_is_found_before_a_re_key_seals_to_it(
    make_user: MakeUser, engine: AsyncEngine, crypto: CryptoConfig
) -> None:
    """An added slot row would get the next account key sealed to its public key by the
    next password change: the unlock that starts the change refuses it."""
    created = await make_user(ALICE)
    async with engine.begin() as conn:
        recovery = next(s for s in await slots_of(conn, created.user.id) if s.kind == "recovery")
        await conn.execute(
            t.cm_key_slots.insert().values(
                user_id=created.user.id,
                kind="app",
                name="attacker",
                lookup_id=b"\x01" * 16,
                record=recovery.record,
                created_at=utcnow(),
            )
        )
    with pytest.raises(KeyRowsTampered):
        await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    with pytest.raises(KeyRowsTampered):
        await change_password(engine, ALICE, pw(PASSWORD), pw("a new password"), crypto)
    async with engine.connect() as conn:
        generation = (
            await conn.execute(
                select(t.cm_accounts.c.generation).where(t.cm_accounts.c.user_id == created.user.id)
            )
        ).scalar_one()
    assert generation == 0  # nothing was re-keyed


async def test_a_changed_slot_record_is_found(
    make_user: MakeUser, engine: AsyncEngine, crypto: CryptoConfig
) -> None:
    created = await make_user(ALICE)
    async with engine.begin() as conn:
        slots = await slots_of(conn, created.user.id)
        recovery = next(s for s in slots if s.kind == "recovery")
        password = next(s for s in slots if s.kind == "password")
        await conn.execute(
            update(t.cm_key_slots)
            .where(t.cm_key_slots.c.id == recovery.id)
            .values(record=password.record)
        )
    with pytest.raises(KeyRowsTampered):
        await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    assert created.recovery_code is not None
    with pytest.raises(AuthenticationFailed):
        await recover(engine, ALICE, created.recovery_code, pw("a new password"), crypto)


async def test_a_changed_key_pair_row_is_found(
    make_user: MakeUser, engine: AsyncEngine, crypto: CryptoConfig
) -> None:
    created = await make_user(ALICE)
    async with engine.begin() as conn:
        await conn.execute(
            update(t.cm_key_pairs)
            .where(t.cm_key_pairs.c.user_id == created.user.id)
            .values(active=False)
        )
    with pytest.raises(KeyRowsTampered):
        await unlock_account(engine, ALICE, pw(PASSWORD), crypto)


async def test_crypt_flipped_in_sql_lets_the_user_in_and_tells_them(
    make_user: MakeUser, engine: AsyncEngine, crypto: CryptoConfig
) -> None:
    created = await make_user(ALICE)
    async with engine.begin() as conn:
        await conn.execute(
            update(t.virtual_users).where(t.virtual_users.c.id == created.user.id).values(crypt=0)
        )
    macs = await _macs(engine, created.user.id)
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    assert (await _events(engine, created.user.id)).count("crypt_changed") == 1
    assert await _macs(engine, created.user.id) == macs  # the flip is not vouched for


async def test_every_change_through_cryptmail_keeps_the_rows_sealed(
    make_user: MakeUser, engine: AsyncEngine, crypto: CryptoConfig
) -> None:
    created = await make_user(ALICE)
    account, _ = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    await add_app_password(engine, account, "phone", crypto)
    await add_app_password(engine, account, "laptop", crypto)
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    await revoke_app_password(engine, created.user.id, "laptop", account=account)
    account, _ = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    # An administrator has no key to rewrite the MAC with: a slot gone is allowed.
    await revoke_app_password(engine, created.user.id, "phone")
    await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    await change_password(engine, ALICE, pw(PASSWORD), pw("a new password"), crypto)
    assert created.recovery_code is not None
    await recover(engine, ALICE, created.recovery_code, pw("a third password"), crypto)
    await unlock_account(engine, ALICE, pw("a third password"), crypto)
    assert "key_rows_changed" not in await _events(engine, created.user.id)
