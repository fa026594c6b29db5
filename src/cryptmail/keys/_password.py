"""Password change, recovery with the code, and renewing the code.

Each is one transaction: the key slot and virtual_users.password change together, so a
crash at any point leaves the old or the new password working, never neither (proved
by tests/keys/test_crash.py through the checkpoints below). All Argon2 work happens
before the transaction opens, so no lock is held across it. A wrong old password or
code changes nothing.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.crypto import code_lookup_id, generate_recovery_code, normalize_code
from cryptmail.db import tables as t
from cryptmail.errors import AuthenticationFailed, KeySlotError
from cryptmail.keys import _events as events
from cryptmail.keys._account import UnlockedAccount
from cryptmail.keys._cache import UnlockedAccounts
from cryptmail.keys._faults import checkpoint
from cryptmail.keys._keyring import account_uuid, open_account
from cryptmail.keys._login import unlock_account
from cryptmail.keys._provision import insert_slot
from cryptmail.keys._slots import (
    PASSWORD,
    RECOVERY,
    SlotRow,
    burn_kdf,
    hash_fingerprint,
    hash_for_slot,
    make_slot,
    open_slot,
    slot_context,
    slots_of,
)
from cryptmail.secret import Password
from cryptmail.users import find_user, set_password_hash


async def _replace_slot(
    conn: AsyncConnection, old: SlotRow, record: bytes, **values: object
) -> None:
    # Compare-and-swap on the record: a concurrent change of the same slot loses cleanly.
    result = await conn.execute(
        update(t.cm_key_slots)
        .where(t.cm_key_slots.c.id == old.id, t.cm_key_slots.c.record == old.record)
        .values(record=record, **values)
    )
    if result.rowcount != 1:
        raise KeySlotError("the key slot changed while this change ran; try again")


async def _set_password(
    conn: AsyncConnection,
    account: UnlockedAccount,
    password_slot: SlotRow | None,
    record: bytes,
    new_hash: str,
) -> None:
    fingerprint = hash_fingerprint(new_hash)
    if password_slot is None:
        await insert_slot(conn, account.user.id, PASSWORD, record, fingerprint=fingerprint)
    else:
        await _replace_slot(conn, password_slot, record, hash_fingerprint=fingerprint)
    checkpoint("password:after-slot")
    await set_password_hash(conn, account.user.id, new_hash)
    checkpoint("password:after-hash")


async def change_password(
    engine: AsyncEngine,
    email: str,
    old: Password,
    new: Password,
    crypto: CryptoConfig,
    *,
    client_ip: str = "",
    cache: UnlockedAccounts | None = None,
) -> None:
    """Verify `old`, re-lock the key with `new` and change the hash, in one transaction.

    With `cache`, its cached credentials of `email` are dropped after the commit, so only
    `new` logs in (the slot check would refuse the old one anyway); live sessions keep
    their unlocked key until they end. Raises AuthenticationFailed, KeySlotError.
    """
    account, slot = await unlock_account(
        engine, email, old, crypto, client_ip=client_ip, allow_app_password=False
    )
    uuid = account.account_uuid
    record = await make_slot(
        account.account_key.reveal(), new, crypto.argon2, slot_context(uuid, PASSWORD, "")
    )
    new_hash = await hash_for_slot(new, crypto.argon2)
    checkpoint("password:before-transaction")
    async with engine.begin() as conn:
        await _set_password(conn, account, slot, record, new_hash)
        await events.record_event(conn, account.user.id, events.PASSWORD_CHANGED, client_ip)
        checkpoint("password:before-commit")
    checkpoint("password:after-commit")
    if cache is not None:
        cache.forget(email)


async def _new_recovery(account: UnlockedAccount, crypto: CryptoConfig) -> tuple[str, bytes, bytes]:
    code = generate_recovery_code()
    normalized = normalize_code(code)
    assert normalized is not None  # noqa: S101 - generated codes are always valid
    record = await make_slot(
        account.account_key.reveal(),
        Password.from_str(normalized),
        crypto.argon2,
        slot_context(account.account_uuid, RECOVERY, ""),
    )
    return code, record, code_lookup_id(normalized)


async def _store_recovery(
    conn: AsyncConnection,
    account: UnlockedAccount,
    old: SlotRow | None,
    record: bytes,
    lookup: bytes,
) -> None:
    if old is None:
        await insert_slot(conn, account.user.id, RECOVERY, record, lookup_id=lookup)
    else:
        await _replace_slot(conn, old, record, lookup_id=lookup)


async def recover(
    engine: AsyncEngine,
    email: str,
    code: str,
    new: Password,
    crypto: CryptoConfig,
    *,
    client_ip: str = "",
    cache: UnlockedAccounts | None = None,
) -> str:
    """Set a new password with the recovery code; the code is used up and a new one
    returned (show it once). With `cache`, cached credentials of `email` are dropped as
    in `change_password`. Raises AuthenticationFailed for any wrong input."""
    normalized = normalize_code(code)
    async with engine.connect() as conn:
        user = await find_user(conn, email)
        uuid = await account_uuid(conn, user.id) if user is not None else None
        slots = await slots_of(conn, user.id) if user is not None and uuid else []
    recovery_slot = next((s for s in slots if s.kind == RECOVERY), None)
    if user is None or uuid is None or recovery_slot is None or normalized is None:
        await burn_kdf(crypto.argon2)
        raise AuthenticationFailed("recovery: no such user, no recovery slot or malformed code")
    account_key = await open_slot(recovery_slot, uuid, Password.from_str(normalized), crypto.argon2)
    if account_key is None:
        async with engine.begin() as conn:
            await events.record_event(conn, user.id, events.SIGN_IN_FAILED, client_ip)
        raise AuthenticationFailed("recovery: wrong code")
    async with engine.connect() as conn:
        account = await open_account(conn, user, uuid, account_key)
    password_slot = next((s for s in slots if s.kind == PASSWORD), None)
    record = await make_slot(account_key, new, crypto.argon2, slot_context(uuid, PASSWORD, ""))
    new_hash = await hash_for_slot(new, crypto.argon2)
    new_code, recovery_record, lookup = await _new_recovery(account, crypto)
    checkpoint("recover:before-transaction")
    async with engine.begin() as conn:
        await _set_password(conn, account, password_slot, record, new_hash)
        await _store_recovery(conn, account, recovery_slot, recovery_record, lookup)
        await events.record_event(conn, user.id, events.RECOVERY_USED, client_ip)
        checkpoint("recover:before-commit")
    checkpoint("recover:after-commit")
    if cache is not None:
        cache.forget(email)
    return new_code


async def renew_recovery_code(
    engine: AsyncEngine, account: UnlockedAccount, crypto: CryptoConfig, *, client_ip: str = ""
) -> str:
    """Replace the recovery code (the caller proved the password). Returns the new code."""
    async with engine.connect() as conn:
        slots = await slots_of(conn, account.user.id)
    old = next((s for s in slots if s.kind == RECOVERY), None)
    code, record, lookup = await _new_recovery(account, crypto)
    async with engine.begin() as conn:
        await _store_recovery(conn, account, old, record, lookup)
        await events.record_event(conn, account.user.id, events.RECOVERY_RENEWED, client_ip)
    return code


async def has_recovery_code(engine: AsyncEngine, user_id: int) -> bool:
    async with engine.connect() as conn:
        return any(s.kind == RECOVERY for s in await slots_of(conn, user_id))


async def verify_only(
    engine: AsyncEngine, email: str, password: Password, crypto: CryptoConfig
) -> UnlockedAccount:
    """Unlock with the login password only (not an app password), e.g. before exports."""
    account, _slot = await unlock_account(engine, email, password, crypto, allow_app_password=False)
    return account
