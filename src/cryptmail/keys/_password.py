"""Password change: the old password opens the account key, and a re-key (`_rekey`)
replaces it: a new account key and key pair, every other slot sealed again, and the
password slot locked by the new password.

One write transaction: the keys, the slots and virtual_users.password change together,
so a crash at any point leaves the old or the new password working, never neither
(proved by tests/keys/test_crash.py through the checkpoints below). The Argon2 work runs
before the transaction opens, so no lock is held across it. A wrong old password
changes nothing but the failed-sign-in event.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.db import UserId
from cryptmail.errors import DatabaseConflict, KeySlotError
from cryptmail.keys import _events as events
from cryptmail.keys._account import AccountKey
from cryptmail.keys._cache import UnlockedAccounts
from cryptmail.keys._credential import KeylessUser, check_credential
from cryptmail.keys._faults import checkpoint
from cryptmail.keys._integrity import keeping_rows_sealed, verify_key_rows
from cryptmail.keys._kdf import hash_for_slot, make_slot, slot_label
from cryptmail.keys._keyring import account_uuid
from cryptmail.keys._provision import insert_keys, prepare_keys
from cryptmail.keys._rekey import next_generation, rekey
from cryptmail.keys._slots import PASSWORD, SlotRow, hash_fingerprint, insert_slot, replace_slot
from cryptmail.secret import Password
from cryptmail.users import User, set_password_hash


async def set_password(
    conn: AsyncConnection,
    user_id: UserId,
    password_slot: SlotRow | None,
    record: bytes,
    new_hash: str,
) -> None:
    """Write a new password slot record and the SQL hash it goes with, in the caller's
    transaction. Raises KeySlotError if the slot changed meanwhile."""
    fingerprint = hash_fingerprint(new_hash)
    if password_slot is None:
        await insert_slot(conn, user_id, PASSWORD, record, fingerprint=fingerprint)
    else:
        await replace_slot(conn, password_slot, record, hash_fingerprint=fingerprint)
    checkpoint("password:after-slot")
    await set_password_hash(conn, user_id, new_hash)
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
) -> tuple[tuple[str, str], ...]:
    """Verify `old`, re-key the account with the new password slot and replace the
    hash, in one transaction. Argon2id: three for a user with keys (open the old slot,
    lock the new one, hash `new`), two for a user without keys yet (whose keys are made
    now, locked by `new`); one more when the old hash was an Argon2 written outside
    cryptmail. Version-1 slots other than the password's are deleted (`_rekey`).

    With `cache`, its cached credentials of `email` are dropped after the commit, so only
    `new` logs in (the slot check would refuse the old one anyway); live sessions end
    when their `CredentialWatcher` sees the generation move (`_watcher`). Returns the
    (kind, name) of the version-1 slots the re-key had to delete (a recovery code or app
    passwords made before slot version 2 and never used since), so the caller can tell
    the user to make new ones. Raises AuthenticationFailed, KeySlotError.
    """
    opened = await check_credential(
        engine, email, old, crypto, client_ip=client_ip, failure_event=events.PASSWORD_CHANGE_FAILED
    )
    new_hash = await hash_for_slot(new, crypto.argon2)
    dropped: tuple[tuple[str, str], ...] = ()
    if isinstance(opened, KeylessUser):
        await _first_password(engine, opened.user, new, new_hash, crypto, client_ip)
    else:
        dropped = await _replace_password(engine, opened, new, new_hash, crypto, client_ip)
    if cache is not None:
        cache.forget(email)
    return dropped


async def _replace_password(
    engine: AsyncEngine,
    opened: AccountKey,
    new: Password,
    new_hash: str,
    crypto: CryptoConfig,
    client_ip: str,
) -> tuple[tuple[str, str], ...]:
    old_key = opened.account_key.reveal()
    await verify_key_rows(engine, opened.user.id, old_key, opened.generation, client_ip)
    following = next_generation(opened.generation)
    label = slot_label(opened.account_uuid, PASSWORD, "", following.generation)
    record = await make_slot(following.account_key, new, crypto.argon2, label)
    checkpoint("password:before-transaction")
    async with engine.begin() as conn:
        async with keeping_rows_sealed(conn, opened.user.id, old_key) as sealing:
            rekeyed = await rekey(
                conn,
                opened.user.id,
                opened.account_uuid,
                old_key,
                opened.generation,
                following,
                skip={opened.slot.id},
            )
            sealing.account_key = following.account_key
            await set_password(conn, opened.user.id, opened.slot, record, new_hash)
        await events.record_event(conn, opened.user.id, events.PASSWORD_CHANGED, client_ip)
        checkpoint("password:before-commit")
    checkpoint("password:after-commit")
    return rekeyed.dropped


async def _first_password(
    engine: AsyncEngine,
    user: User,
    new: Password,
    new_hash: str,
    crypto: CryptoConfig,
    client_ip: str,
) -> None:
    # An ISPmail row without keys: its keys are made now, locked by the new password,
    # together with the new hash (a first login would make them with the old one).
    keys = await prepare_keys(new, crypto, with_recovery=False)
    checkpoint("password:before-transaction")
    try:
        async with engine.begin() as conn:
            if await account_uuid(conn, user.id) is not None:
                raise _made_meanwhile()
            await set_password_hash(conn, user.id, new_hash)
            await insert_keys(conn, user.id, keys, new_hash)
            await events.record_event(conn, user.id, events.PASSWORD_CHANGED, client_ip)
            checkpoint("password:before-commit")
    except DatabaseConflict as exc:
        raise _made_meanwhile() from exc
    checkpoint("password:after-commit")


def _made_meanwhile() -> KeySlotError:
    return KeySlotError(
        "keys were made for this user (a first login) while the password changed; "
        "nothing was changed: try again"
    )
