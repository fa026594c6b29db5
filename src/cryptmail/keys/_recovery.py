"""The recovery code: set a new password with it, renew it, ask whether there is one,
and give one to a user who has none.

Users whose keys were made at their first login (an ISPmail row, keys/_provision.py)
have no recovery code: making its slot needs the account key, and their first login
may be over IMAP, where there is nowhere to show a code. The web sign-in, which holds
the unlocked account, gives them one (`ensure_recovery_code`); an IMAP login tells
them to sign in there until they have one. "Has a recovery code" is read from the
slot rows, so a code dropped by a re-key (a version-1 slot) is made again the same way.

Recovery re-keys the account (`_rekey`), like a password change: a recovery code kept
with an old copy of its slot opens nothing delivered after it. Recovery is
one write transaction: the keys, the password slot, the hash and the new recovery slot
change together. A wrong code changes nothing but the failed-sign-in event.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.crypto import code_lookup_id, generate_recovery_code, normalize_code
from cryptmail.db import UserId
from cryptmail.errors import AuthenticationFailed, DatabaseConflict, KeySlotError
from cryptmail.keys import _events as events
from cryptmail.keys._account import UnlockedAccount
from cryptmail.keys._cache import UnlockedAccounts
from cryptmail.keys._faults import checkpoint
from cryptmail.keys._integrity import keeping_rows_sealed, verify_key_rows
from cryptmail.keys._kdf import burn_kdf, hash_for_slot, make_slot, open_slot, slot_label
from cryptmail.keys._keyring import account_state
from cryptmail.keys._password import set_password
from cryptmail.keys._rekey import GenerationKey, check_generation, next_generation, rekey
from cryptmail.keys._slots import (
    PASSWORD,
    RECOVERY,
    SlotRow,
    insert_slot,
    replace_slot,
    slots_of,
)
from cryptmail.secret import Password
from cryptmail.users import find_user

log = logging.getLogger(__name__)


async def _new_recovery(
    uuid: bytes, following: GenerationKey, crypto: CryptoConfig
) -> tuple[str, bytes, bytes]:
    # `following`: the account key (and its generation) the new slot holds.
    code = generate_recovery_code()
    normalized = normalize_code(code)
    assert normalized is not None  # noqa: S101 - generated codes are always valid
    record = await make_slot(
        following.account_key,
        Password.from_str(normalized),
        crypto.argon2,
        slot_label(uuid, RECOVERY, "", following.generation),
    )
    return code, record, code_lookup_id(normalized)


async def _store_recovery(
    conn: AsyncConnection,
    user_id: UserId,
    old: SlotRow | None,
    record: bytes,
    lookup: bytes,
) -> None:
    if old is None:
        await insert_slot(conn, user_id, RECOVERY, record, lookup_id=lookup)
    else:
        await replace_slot(conn, old, record, lookup_id=lookup)


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
        state = await account_state(conn, user.id) if user is not None else None
        slots = await slots_of(conn, user.id) if user is not None and state else []
    recovery_slot = next((s for s in slots if s.kind == RECOVERY), None)
    if user is None or state is None or recovery_slot is None or normalized is None:
        await burn_kdf(crypto.argon2)
        raise AuthenticationFailed("recovery: no such user, no recovery slot or malformed code")
    uuid, generation = state
    opened = await open_slot(
        recovery_slot, uuid, generation, Password.from_str(normalized), crypto.argon2
    )
    if opened is None:
        async with engine.begin() as conn:
            await events.record_event(conn, user.id, events.RECOVERY_FAILED, client_ip)
        raise AuthenticationFailed("recovery: wrong code")
    await verify_key_rows(engine, user.id, opened.account_key, generation, client_ip)
    password_slot = next((s for s in slots if s.kind == PASSWORD), None)
    following = next_generation(generation)
    record = await make_slot(
        following.account_key,
        new,
        crypto.argon2,
        slot_label(uuid, PASSWORD, "", following.generation),
    )
    new_hash = await hash_for_slot(new, crypto.argon2)
    new_code, recovery_record, lookup = await _new_recovery(uuid, following, crypto)
    checkpoint("recover:before-transaction")
    replaced = {recovery_slot.id} | ({password_slot.id} if password_slot is not None else set())
    async with engine.begin() as conn:
        async with keeping_rows_sealed(conn, user.id, opened.account_key) as sealing:
            await rekey(
                conn, user.id, uuid, opened.account_key, generation, following, skip=replaced
            )
            sealing.account_key = following.account_key
            await set_password(conn, user.id, password_slot, record, new_hash)
            await _store_recovery(conn, user.id, recovery_slot, recovery_record, lookup)
        await events.record_event(conn, user.id, events.RECOVERY_USED, client_ip)
        checkpoint("recover:before-commit")
    checkpoint("recover:after-commit")
    if cache is not None:
        cache.forget(email)
    return new_code


async def renew_recovery_code(
    engine: AsyncEngine, account: UnlockedAccount, crypto: CryptoConfig, *, client_ip: str = ""
) -> str:
    """Replace the recovery code (the caller proved the password). Returns the new code.

    Not a re-key: the session that asked keeps working. A code that may have leaked
    calls for a password change too (docs/security.md). Raises KeySlotError if the
    account was re-keyed since `account` was unlocked."""
    async with engine.connect() as conn:
        slots = await slots_of(conn, account.user.id)
    old = next((s for s in slots if s.kind == RECOVERY), None)
    current = GenerationKey(account.account_key.reveal(), account.generation)
    code, record, lookup = await _new_recovery(account.account_uuid, current, crypto)
    async with engine.begin() as conn:
        await check_generation(conn, account.user.id, account.generation)
        async with keeping_rows_sealed(conn, account.user.id, current.account_key):
            await _store_recovery(conn, account.user.id, old, record, lookup)
        await events.record_event(conn, account.user.id, events.RECOVERY_RENEWED, client_ip)
    return code


async def ensure_recovery_code(
    engine: AsyncEngine, account: UnlockedAccount, crypto: CryptoConfig, *, client_ip: str = ""
) -> str | None:
    """A new recovery code if the account has none (show it once), else None (one
    Argon2id only when a code is made). A sign-in elsewhere that made one meanwhile, or
    a re-key since `account` was unlocked, leaves it to the next sign-in: None."""
    if await has_recovery_code(engine, account.user.id):
        return None
    current = GenerationKey(account.account_key.reveal(), account.generation)
    code, record, lookup = await _new_recovery(account.account_uuid, current, crypto)
    try:
        async with engine.begin() as conn:
            await check_generation(conn, account.user.id, account.generation)
            # A new slot is a change of the key rows: their MAC covers the slot list.
            async with keeping_rows_sealed(conn, account.user.id, current.account_key):
                await _store_recovery(conn, account.user.id, None, record, lookup)
            await events.record_event(conn, account.user.id, events.RECOVERY_RENEWED, client_ip)
    except (DatabaseConflict, KeySlotError):
        return None
    log.info("recovery code made for user id %d, which had none", account.user.id)
    return code


async def has_recovery_code(engine: AsyncEngine, user_id: UserId) -> bool:
    async with engine.connect() as conn:
        return any(s.kind == RECOVERY for s in await slots_of(conn, user_id))
