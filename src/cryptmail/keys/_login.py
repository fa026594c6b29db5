"""Login: a password or an app password unlocks the account for a session.

Every failure is the same AuthenticationFailed to the caller; its `detail` (for the
operator log, by id) says which case it was. Every attempt spends at least one Argon2 at
slot cost (a real slot unlock, or `burn_kdf` for an unknown user, a user without keys
and a refused outside hash), so timing does not tell which addresses exist or have keys.

A successful password login rehashes a weak or outdated virtual_users.password (any
scheme or cost other than the `{ARGON2ID}` slots are locked at) in the transaction that
records its fingerprint on the password slot; the column stays a Dovecot `{SCHEME}` hash.
`crypto.rehash_weak_hashes = false` leaves the column as it is.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.crypto import code_lookup_id, normalize_code
from cryptmail.db import tables as t
from cryptmail.errors import AuthenticationFailed, DatabaseConflict, UserError
from cryptmail.keys import _events as events
from cryptmail.keys._account import UnlockedAccount
from cryptmail.keys._keyring import account_uuid, open_account
from cryptmail.keys._provision import provision_keys
from cryptmail.keys._slots import (
    APP,
    PASSWORD,
    SlotRow,
    burn_kdf,
    hash_fingerprint,
    hash_for_slot,
    open_slot,
    slot_by_lookup,
    slots_of,
    verify_hash,
)
from cryptmail.secret import Password
from cryptmail.users import Argon2Parameters, User, find_user, needs_rehash

log = logging.getLogger(__name__)


async def unlock_account(
    engine: AsyncEngine,
    email: str,
    credential: Password,
    crypto: CryptoConfig,
    *,
    client_ip: str = "",
    allow_app_password: bool = True,
) -> tuple[UnlockedAccount, SlotRow]:
    """Unlock with the login password or (if allowed) an app password.

    Returns the account and the slot that opened it. A user without keys (an ISPmail
    row made by another tool) whose password verifies gets keys now, made with that
    password. Raises AuthenticationFailed.
    """
    async with engine.connect() as conn:
        user = await find_user(conn, email)
        if user is None:
            await burn_kdf(crypto.argon2)
            raise AuthenticationFailed("unknown user")
        uuid = await account_uuid(conn, user.id)
        slots = await slots_of(conn, user.id) if uuid is not None else []

    password_slot = next((s for s in slots if s.kind == PASSWORD), None)
    current_fingerprint = hash_fingerprint(user.password_hash)
    in_sync = password_slot is not None and password_slot.hash_fingerprint == current_fingerprint
    if allow_app_password and uuid is not None and in_sync:
        # Not when the hash was changed outside (an admin reset): app passwords wait until
        # the new password has logged in once and the slot adopted the new hash.
        normalized = normalize_code(credential.text()) if _is_text(credential) else None
        if normalized is not None:
            async with engine.connect() as conn:
                slot = await slot_by_lookup(conn, code_lookup_id(normalized))
            if slot is not None and slot.user_id == user.id and slot.kind == APP:
                code = Password.from_str(normalized)
                account_key = await open_slot(slot, uuid, code, crypto.argon2)
                if account_key is not None:
                    async with engine.connect() as conn:
                        return await open_account(conn, user, uuid, account_key), slot

    if uuid is None:
        return await _first_login(engine, user, credential, crypto, client_ip)
    if password_slot is None:
        # Keys without a password slot (never written so; a bad restore): the recovery
        # code makes a new one. Making keys again here would loop.
        await burn_kdf(crypto.argon2)
        await _failed(engine, user, client_ip, "the account has no password slot")
    assert password_slot is not None  # noqa: S101 - _failed raises

    stale = not in_sync
    if stale:
        # The hash changed outside cryptmail (an admin tool, a webmail plugin writing the
        # hash itself): it is the authority for who may log in, so check it too.
        if not await verify_hash(user.password_hash, credential):
            await burn_kdf(crypto.argon2)  # the slot unlock a right hash would cost
            await _failed(engine, user, client_ip, "wrong password (hash changed outside)")
    account_key = await open_slot(password_slot, uuid, credential, crypto.argon2)
    if account_key is None:
        await _failed(engine, user, client_ip, "wrong password")
    assert account_key is not None  # noqa: S101 - _failed raises
    new_hash = None
    if crypto.rehash_weak_hashes and _weak_hash(user.password_hash, crypto):
        new_hash = await hash_for_slot(credential, crypto.argon2)
    if stale or new_hash is not None:
        password_slot, user = await _adopt_hash(engine, password_slot, user, new_hash)
    async with engine.connect() as conn:
        return await open_account(conn, user, uuid, account_key), password_slot


def _weak_hash(stored: str, crypto: CryptoConfig) -> bool:
    params = Argon2Parameters(
        time_cost=crypto.argon2.time_cost,
        memory_cost=crypto.argon2.memory_kib,
        parallelism=crypto.argon2.parallelism,
    )
    try:
        return needs_rehash(stored, "ARGON2ID", argon2=params)
    except UserError:
        return True  # it verified through the slot, but no other consumer can use it


async def _adopt_hash(
    engine: AsyncEngine, slot: SlotRow, user: User, new_hash: str | None
) -> tuple[SlotRow, User]:
    # Both the stored hash and the slot took this password: remember the hash (or the
    # stronger one replacing it), so later logins skip the second slow check. Only if
    # neither the hash nor the slot changed meanwhile; one transaction for both.
    final_hash = new_hash if new_hash is not None else user.password_hash
    fingerprint = hash_fingerprint(final_hash)
    async with engine.begin() as conn:
        current = await find_user(conn, user.email)
        if current is None or current.password_hash != user.password_hash:
            return slot, user
        result = await conn.execute(
            update(t.cm_key_slots)
            .where(t.cm_key_slots.c.id == slot.id, t.cm_key_slots.c.record == slot.record)
            .values(hash_fingerprint=fingerprint)
        )
        if result.rowcount != 1:
            return slot, user
        if new_hash is not None:
            await conn.execute(
                update(t.virtual_users)
                .where(
                    t.virtual_users.c.id == user.id,
                    t.virtual_users.c.password == user.password_hash,
                )
                .values(password=new_hash)
            )
    if new_hash is not None:
        log.info("login of user id %d: rehashed a weak password hash to ARGON2ID", user.id)
    else:
        log.info("login of user id %d: adopted a password hash written outside cryptmail", user.id)
    return replace(slot, hash_fingerprint=fingerprint), replace(user, password_hash=final_hash)


def _is_text(credential: Password) -> bool:
    try:
        credential.text()
    except UnicodeDecodeError:
        return False
    return True


async def _failed(engine: AsyncEngine, user: User, client_ip: str, detail: str) -> None:
    async with engine.begin() as conn:
        await events.record_event(conn, user.id, events.SIGN_IN_FAILED, client_ip=client_ip)
    log.info("login failed for user id %d: %s", user.id, detail)
    raise AuthenticationFailed(detail)


async def _first_login(
    engine: AsyncEngine, user: User, credential: Password, crypto: CryptoConfig, client_ip: str
) -> tuple[UnlockedAccount, SlotRow]:
    verified = await verify_hash(user.password_hash, credential)
    # The slot unlock a user with keys costs: without it a cheap legacy hash would tell
    # that this address exists but has no keys yet.
    await burn_kdf(crypto.argon2)
    if not verified:
        log.info("login failed for user id %d: wrong password (no keys yet)", user.id)
        raise AuthenticationFailed("wrong password")
    try:
        async with engine.begin() as conn:
            # Another connection may have provisioned meanwhile; then unlock normally.
            if await account_uuid(conn, user.id) is None:
                await provision_keys(conn, user, credential, crypto, with_recovery=False)
                log.info("made keys for user id %d at first login", user.id)
    except DatabaseConflict:
        # A concurrent first login won the race (unique account row); use its keys.
        log.info("first login of user id %d: keys were made concurrently; using them", user.id)
    return await unlock_account(
        engine, user.email, credential, crypto, client_ip=client_ip, allow_app_password=False
    )
