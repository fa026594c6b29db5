"""Login: a password or an app password opens the account key for a session.

`verify_login` is the whole login: the credential check (`_credential`), keys made at the
first login of a user who has none (an ISPmail row made by another tool), and the SQL
hash brought up to date. `unlock_account` adds the private keys, for a session.

A successful password login rehashes a weak or outdated virtual_users.password (any
scheme or cost other than the `{ARGON2ID}` slots are locked at) in the transaction that
records its fingerprint on the password slot; the column stays a Dovecot `{SCHEME}` hash.
`crypto.rehash_weak_hashes = false` leaves the column as it is.

A login that opens a version-1 slot (made before re-keying existed) writes it as
version 2 at the same salt and cost, which needs no second Argon2: from then on a re-key
can seal new account keys to it without its credential.

A login to an account marked re-key pending (an app password revoked without the key,
keys/_app_passwords.py) re-keys it, holding the account key the credential opened.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.crypto import OpenedSlot, slot_version, upgrade_slot
from cryptmail.db import tables as t
from cryptmail.errors import DatabaseConflict, KeySlotError, UserError
from cryptmail.keys._account import AccountKey, UnlockedAccount
from cryptmail.keys._credential import KeylessUser, check_credential
from cryptmail.keys._generation import read_generation
from cryptmail.keys._integrity import keeping_rows_sealed, verify_key_rows
from cryptmail.keys._kdf import hash_for_slot, slot_label
from cryptmail.keys._keyring import account_uuid, open_private_keys
from cryptmail.keys._provision import insert_keys, prepare_keys
from cryptmail.keys._rekey import check_generation, next_generation, rekey, rekey_pending
from cryptmail.keys._slots import (
    PASSWORD,
    SlotRow,
    hash_fingerprint,
    replace_slot,
    set_fingerprint,
    slots_of,
)
from cryptmail.secret import Password, SecretBytes
from cryptmail.users import User, find_user, needs_rehash

log = logging.getLogger(__name__)


async def verify_login(
    engine: AsyncEngine,
    email: str,
    credential: Password,
    crypto: CryptoConfig,
    *,
    client_ip: str = "",
    allow_app_password: bool = True,
) -> AccountKey:
    """Log in with the login password or (if allowed) an app password; the opened key.

    A user without keys whose password matches the SQL hash gets keys now, made with
    that password. A password login adopts a hash changed outside cryptmail and
    rehashes a weak one (see the module docstring). Raises AuthenticationFailed.
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
        return await _first_login(engine, opened.user, credential, crypto, client_ip)
    key = opened.account_key.reveal()
    await verify_key_rows(engine, opened.user.id, key, opened.generation, client_ip)
    if opened.slot_key is not None and slot_version(opened.slot.record) == 1:
        opened = await _upgrade_slot(engine, opened)
    opened = await _rekey_if_pending(engine, opened)
    if opened.slot.kind != PASSWORD:
        return opened  # an app password: the SQL hash is none of its business
    new_hash = None
    if crypto.rehash_weak_hashes and _weak_hash(opened.user.password_hash, crypto):
        new_hash = await hash_for_slot(credential, crypto.argon2)
    if opened.hash_checked or new_hash is not None:
        return await _adopt_hash(engine, opened, new_hash)
    return opened


async def unlock_account(
    engine: AsyncEngine,
    email: str,
    credential: Password,
    crypto: CryptoConfig,
    *,
    client_ip: str = "",
    allow_app_password: bool = True,
) -> tuple[UnlockedAccount, SlotRow]:
    """`verify_login`, then every private key unsealed: the account a session holds,
    and the slot that opened it. Raises AuthenticationFailed, NoKeyPair."""
    opened = await verify_login(
        engine,
        email,
        credential,
        crypto,
        client_ip=client_ip,
        allow_app_password=allow_app_password,
    )
    return await open_private_keys(engine, opened), opened.slot


async def _upgrade_slot(engine: AsyncEngine, opened: AccountKey) -> AccountKey:
    # The slot key came out of this login's Argon2: sealing the account key to its public
    # half is EC work only. Lost races (a change or another upgrade) keep the old record.
    assert opened.slot_key is not None  # noqa: S101 - checked by the caller
    slot = opened.slot
    label = slot_label(opened.account_uuid, slot.kind, slot.name, opened.generation)
    record = upgrade_slot(OpenedSlot(opened.account_key.reveal(), opened.slot_key), label)
    try:
        async with engine.begin() as conn:
            await check_generation(conn, opened.user.id, opened.generation)
            async with keeping_rows_sealed(conn, opened.user.id, opened.account_key.reveal()):
                await replace_slot(conn, slot, record)
    except KeySlotError:
        return opened
    log.info("login of user id %d: key slot %d upgraded to version 2", opened.user.id, slot.id)
    return replace(opened, slot=replace(slot, record=record))


async def _rekey_if_pending(engine: AsyncEngine, opened: AccountKey) -> AccountKey:
    # EC and AES work only: every version-2 slot, this one too, follows without its
    # credential. A lost race (another login or a change re-keyed first) keeps `opened`,
    # as for any key changed during a login.
    user_id = opened.user.id
    async with engine.connect() as conn:
        if not await rekey_pending(conn, user_id):
            return opened
    following = next_generation(opened.generation)
    old_key = opened.account_key.reveal()
    try:
        async with engine.begin() as conn:
            async with keeping_rows_sealed(conn, user_id, old_key) as sealing:
                await rekey(
                    conn, user_id, opened.account_uuid, old_key, opened.generation, following
                )
                sealing.account_key = following.account_key  # the MACs under the new key
            slot = next((s for s in await slots_of(conn, user_id) if s.id == opened.slot.id), None)
            # The re-key moved the credential generation (other sessions hold the old
            # keys and must end); the session this login opens holds the new ones.
            moved = await read_generation(conn, user_id)
    except KeySlotError:
        return opened
    log.info("login of user id %d: re-keyed, as a revocation without the key asked", user_id)
    return replace(
        opened,
        account_key=SecretBytes(following.account_key),
        generation=following.generation,
        slot=slot or opened.slot,  # a version-1 slot whose upgrade lost a race is gone
        credential_generation=moved,
    )


def _weak_hash(stored: str, crypto: CryptoConfig) -> bool:
    try:
        return needs_rehash(stored, "ARGON2ID", argon2=crypto.argon2)
    except UserError:
        return True  # it verified through the slot, but no other consumer can use it


async def _adopt_hash(engine: AsyncEngine, opened: AccountKey, new_hash: str | None) -> AccountKey:
    # Both the stored hash and the slot took this password: remember the hash (or the
    # stronger one replacing it), so later logins skip the second slow check. Only if
    # neither the hash nor the slot changed meanwhile; one transaction for both.
    user, slot = opened.user, opened.slot
    final_hash = new_hash if new_hash is not None else user.password_hash
    fingerprint = hash_fingerprint(final_hash)
    async with engine.begin() as conn:
        current = await find_user(conn, user.email)
        if current is None or current.password_hash != user.password_hash:
            return opened
        if not await set_fingerprint(conn, slot, fingerprint):
            return opened
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
    return replace(
        opened,
        user=replace(user, password_hash=final_hash),
        slot=replace(slot, hash_fingerprint=fingerprint),
        hash_checked=False,
    )


async def _first_login(
    engine: AsyncEngine, user: User, credential: Password, crypto: CryptoConfig, client_ip: str
) -> AccountKey:
    keys = await prepare_keys(credential, crypto, with_recovery=False)  # before the lock
    try:
        async with engine.begin() as conn:
            # Another connection may have provisioned meanwhile; then unlock normally.
            if await account_uuid(conn, user.id) is None:
                await insert_keys(conn, user.id, keys, user.password_hash)
                log.info("made keys for user id %d at first login", user.id)
    except DatabaseConflict:
        # A concurrent first login won the race (unique account row); use its keys.
        log.info("first login of user id %d: keys were made concurrently; using them", user.id)
    return await verify_login(
        engine, user.email, credential, crypto, client_ip=client_ip, allow_app_password=False
    )


async def verify_only(
    engine: AsyncEngine, email: str, password: Password, crypto: CryptoConfig
) -> UnlockedAccount:
    """`unlock_account` with the login password only (not an app password); kept for
    callers of the old name."""
    account, _slot = await unlock_account(engine, email, password, crypto, allow_app_password=False)
    return account
