"""Login: a password or an app password unlocks the account for a session.

Every failure is the same AuthenticationFailed to the caller; its `detail` (for the
operator log, by id) says which case it was. An unknown user costs one Argon2 like a
wrong password, so timing does not tell which addresses exist.
"""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.crypto import code_lookup_id, normalize_code
from cryptmail.db import tables as t
from cryptmail.errors import AuthenticationFailed
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
    open_slot,
    slot_by_lookup,
    slots_of,
    verify_hash,
)
from cryptmail.secret import Password
from cryptmail.users import User, find_user

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

    if allow_app_password and uuid is not None:
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
    password_slot = next((s for s in slots if s.kind == PASSWORD), None)
    if password_slot is None:
        # Keys without a password slot (never written so; a bad restore): the recovery
        # code makes a new one. Making keys again here would loop.
        await burn_kdf(crypto.argon2)
        await _failed(engine, user, client_ip, "the account has no password slot")
    assert password_slot is not None  # noqa: S101 - _failed raises

    stale = password_slot.hash_fingerprint != hash_fingerprint(user.password_hash)
    if stale:
        # The hash changed outside cryptmail (an admin tool, a webmail plugin writing the
        # hash itself): it is the authority for who may log in, so check it too.
        if not await verify_hash(user.password_hash, credential):
            await _failed(engine, user, client_ip, "wrong password (hash changed outside)")
    account_key = await open_slot(password_slot, uuid, credential, crypto.argon2)
    if account_key is None:
        await _failed(engine, user, client_ip, "wrong password")
    assert account_key is not None  # noqa: S101 - _failed raises
    if stale:
        await _adopt_hash(engine, password_slot, user)
    async with engine.connect() as conn:
        return await open_account(conn, user, uuid, account_key), password_slot


async def _adopt_hash(engine: AsyncEngine, slot: SlotRow, user: User) -> None:
    # Both the outside hash and the slot took this password: remember the hash, so later
    # logins skip the second slow check. Only if neither changed meanwhile.
    async with engine.begin() as conn:
        current = await find_user(conn, user.email)
        if current is None or current.password_hash != user.password_hash:
            return
        await conn.execute(
            update(t.cm_key_slots)
            .where(t.cm_key_slots.c.id == slot.id, t.cm_key_slots.c.record == slot.record)
            .values(hash_fingerprint=hash_fingerprint(user.password_hash))
        )
    log.info("login of user id %d: adopted a password hash written outside cryptmail", user.id)


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
    if not await verify_hash(user.password_hash, credential):
        log.info("login failed for user id %d: wrong password (no keys yet)", user.id)
        raise AuthenticationFailed("wrong password")
    async with engine.begin() as conn:
        # Another connection may have provisioned meanwhile; then unlock normally.
        if await account_uuid(conn, user.id) is None:
            await provision_keys(conn, user, credential, crypto, with_recovery=False)
            log.info("made keys for user id %d at first login", user.id)
    return await unlock_account(
        engine, user.email, credential, crypto, client_ip=client_ip, allow_app_password=False
    )
