"""Opening the account key with a credential: the check every login, password change
and key operation starts with. It writes nothing but a failed-sign-in event.

Every failure is the same AuthenticationFailed to the caller; its `detail` (for the
operator log, by id) says which case it was. Every failing path does the same KDF work,
one stored-hash check (the row's own, or `_timing`'s cover hash) and one Argon2id at
slot cost (a slot unlock, or `burn_kdf`), and then waits out `_timing`'s floor, so
timing does not tell which addresses exist, have keys, or wait for their first login.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.crypto import code_lookup_id, normalize_code
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import _events as events
from cryptmail.keys._account import AccountKey
from cryptmail.keys._kdf import burn_kdf, open_slot, verify_hash
from cryptmail.keys._keyring import account_state
from cryptmail.keys._slots import (
    APP,
    PASSWORD,
    hash_fingerprint,
    slot_by_lookup,
    slots_of,
)
from cryptmail.keys._timing import FailureClock
from cryptmail.secret import Password, SecretBytes
from cryptmail.users import User, find_user

log = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class KeylessUser:
    """A user without keys yet (an ISPmail row) whose password matched the SQL hash."""

    user: User


async def check_credential(
    engine: AsyncEngine,
    email: str,
    credential: Password,
    crypto: CryptoConfig,
    *,
    client_ip: str = "",
    allow_app_password: bool = False,
    failure_event: str = events.SIGN_IN_FAILED,
) -> AccountKey | KeylessUser:
    """The opened account key, or for a user without keys the proof that the password
    matched the SQL hash. Raises AuthenticationFailed."""
    clock = FailureClock(engine, crypto.argon2)
    try:
        return await _check(
            engine, email, credential, crypto, clock, client_ip, allow_app_password, failure_event
        )
    except AuthenticationFailed:
        await clock.pad()
        raise


async def _check(
    engine: AsyncEngine,
    email: str,
    credential: Password,
    crypto: CryptoConfig,
    clock: FailureClock,
    client_ip: str,
    allow_app_password: bool,
    failure_event: str,
) -> AccountKey | KeylessUser:
    # Each failing path: one verify_hash and one Argon2id (open_slot or burn_kdf).
    async with engine.connect() as conn:
        user = await find_user(conn, email)
        state = await account_state(conn, user.id) if user is not None else None
        slots = await slots_of(conn, user.id) if user is not None and state is not None else []
    if user is None:  # no connection held: measuring the cover needs one
        await verify_hash(await clock.cover(), credential)
        await burn_kdf(crypto.argon2)
        raise AuthenticationFailed("unknown user")

    if state is None:
        if not await verify_hash(user.password_hash, credential):
            # The slot unlock a user with keys costs. (A right password needs no cover:
            # the caller knows it, and making keys costs more anyway.)
            await burn_kdf(crypto.argon2)
            log.info("login failed for user id %d: wrong password (no keys yet)", user.id)
            raise AuthenticationFailed("wrong password")
        return KeylessUser(user)

    uuid, generation = state
    password_slot = next((s for s in slots if s.kind == PASSWORD), None)
    in_sync = password_slot is not None and password_slot.hash_fingerprint == hash_fingerprint(
        user.password_hash
    )
    if allow_app_password and in_sync:
        # Not when the hash was changed outside (an admin reset): app passwords wait until
        # the new password has logged in once and the slot adopted the new hash.
        opened = await _open_app_slot(engine, user, uuid, generation, credential, crypto)
        if opened is not None:
            return opened

    if password_slot is None:
        # Keys without a password slot (never written so; a bad restore): the recovery
        # code makes a new one. Making keys again here would loop.
        await verify_hash(await clock.cover(), credential)
        await burn_kdf(crypto.argon2)
        raise await _failed(
            engine, user, client_ip, failure_event, "the account has no password slot"
        )
    if not in_sync:
        # The hash changed outside cryptmail (an admin tool, a webmail plugin writing the
        # hash itself): it is the authority for who may log in, so check it too.
        if not await verify_hash(user.password_hash, credential):
            await burn_kdf(crypto.argon2)  # the slot unlock a right hash would cost
            raise await _failed(
                engine, user, client_ip, failure_event, "wrong password (hash changed outside)"
            )
    slot = await open_slot(password_slot, uuid, generation, credential, crypto.argon2)
    if slot is None:
        if in_sync:  # the hash check the other paths make
            await verify_hash(await clock.cover(), credential)
        raise await _failed(engine, user, client_ip, failure_event, "wrong password")
    return AccountKey(
        user,
        uuid,
        SecretBytes(slot.account_key),
        password_slot,
        not in_sync,
        generation=generation,
        slot_key=slot.slot_key,
    )


async def open_account_key(
    engine: AsyncEngine,
    email: str,
    credential: Password,
    crypto: CryptoConfig,
    *,
    client_ip: str = "",
    allow_app_password: bool = False,
) -> AccountKey:
    """Open the account key of `email` with its login password (or, if allowed, an app
    password). Writes nothing on success: no keys are made, no hash is replaced.

    Raises AuthenticationFailed, also for a user without keys yet (a login makes them).
    """
    opened = await check_credential(
        engine,
        email,
        credential,
        crypto,
        client_ip=client_ip,
        allow_app_password=allow_app_password,
    )
    if isinstance(opened, KeylessUser):
        log.info("key of user id %d not opened: no keys yet", opened.user.id)
        raise AuthenticationFailed("no keys yet")
    return opened


async def _open_app_slot(
    engine: AsyncEngine,
    user: User,
    uuid: bytes,
    generation: int,
    credential: Password,
    crypto: CryptoConfig,
) -> AccountKey | None:
    normalized = normalize_code(credential.text()) if _is_text(credential) else None
    if normalized is None:
        return None
    async with engine.connect() as conn:
        slot = await slot_by_lookup(conn, code_lookup_id(normalized))
    if slot is None or slot.user_id != user.id or slot.kind != APP:
        return None
    opened = await open_slot(slot, uuid, generation, Password.from_str(normalized), crypto.argon2)
    if opened is None:
        return None
    return AccountKey(
        user,
        uuid,
        SecretBytes(opened.account_key),
        slot,
        generation=generation,
        slot_key=opened.slot_key,
    )


def _is_text(credential: Password) -> bool:
    try:
        credential.text()
    except UnicodeDecodeError:
        return False
    return True


async def _failed(
    engine: AsyncEngine, user: User, client_ip: str, event: str, detail: str
) -> AuthenticationFailed:
    async with engine.begin() as conn:
        await events.record_event(conn, user.id, event, client_ip=client_ip)
    log.info("login failed for user id %d: %s", user.id, detail)
    return AuthenticationFailed(detail)
