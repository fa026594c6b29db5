"""Creating a user with keys: the hash, the account key, the key pair and the slots in
one transaction. The recovery code is returned once and stored nowhere but its slot.

The Argon2 work (`prepare_keys`) runs before the transaction; `insert_keys` only writes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.crypto import (
    PrivateKey,
    code_lookup_id,
    generate_recovery_code,
    new_account_key,
    normalize_code,
)
from cryptmail.db import UserId
from cryptmail.keys import _events as events
from cryptmail.keys._integrity import seal_key_rows
from cryptmail.keys._kdf import hash_for_slot, make_slot, slot_label
from cryptmail.keys._keyring import (
    insert_account,
    insert_key_pair,
    new_account_uuid,
    new_private_key,
)
from cryptmail.keys._slots import PASSWORD, RECOVERY, hash_fingerprint, insert_slot
from cryptmail.secret import Password
from cryptmail.users import User, add_user


@dataclass(frozen=True, repr=False)
class NewAccount:
    """A created user and the recovery code to show once."""

    user: User
    recovery_code: str | None

    def __repr__(self) -> str:
        return f"NewAccount(user={self.user!r})"


@dataclass(frozen=True, repr=False)
class PreparedKeys:
    """New keys and their slots, locked but not stored yet."""

    account_key: bytes
    account_uuid: bytes
    private_key: PrivateKey
    password_record: bytes
    recovery_code: str | None
    recovery_record: bytes | None


async def prepare_keys(
    password: Password, crypto: CryptoConfig, *, with_recovery: bool = True
) -> PreparedKeys:
    """An account key, a key pair and the slots locking the key (one or two Argon2id)."""
    account_key = new_account_key()
    uuid = new_account_uuid()
    password_record = await make_slot(
        account_key, password, crypto.argon2, slot_label(uuid, PASSWORD, "", 0)
    )
    code = recovery_record = None
    if with_recovery:
        code = generate_recovery_code()
        normalized = normalize_code(code)
        assert normalized is not None  # noqa: S101 - generated codes are always valid
        recovery_record = await make_slot(
            account_key,
            Password.from_str(normalized),
            crypto.argon2,
            slot_label(uuid, RECOVERY, "", 0),
        )
    return PreparedKeys(
        account_key, uuid, new_private_key(crypto.curve), password_record, code, recovery_record
    )


async def insert_keys(
    conn: AsyncConnection, user_id: UserId, keys: PreparedKeys, password_hash: str
) -> None:
    """Store prepared keys for a user without keys, in the caller's transaction;
    `password_hash` is the virtual_users.password the password slot goes with."""
    await insert_account(conn, user_id, keys.account_uuid)
    await insert_key_pair(conn, user_id, keys.account_key, keys.private_key)
    await insert_slot(
        conn, user_id, PASSWORD, keys.password_record, fingerprint=hash_fingerprint(password_hash)
    )
    if keys.recovery_code is not None and keys.recovery_record is not None:
        normalized = normalize_code(keys.recovery_code)
        assert normalized is not None  # noqa: S101 - generated codes are always valid
        await insert_slot(
            conn, user_id, RECOVERY, keys.recovery_record, lookup_id=code_lookup_id(normalized)
        )
    await seal_key_rows(conn, user_id, keys.account_key)
    await events.record_event(conn, user_id, events.KEY_CREATED)


async def provision_keys(
    conn: AsyncConnection,
    user: User,
    password: Password,
    crypto: CryptoConfig,
    *,
    with_recovery: bool = True,
) -> str | None:
    """Give an existing user (no keys yet) an account key, a key pair and slots.

    Runs inside the caller's transaction; returns the recovery code (or None).
    """
    keys = await prepare_keys(password, crypto, with_recovery=with_recovery)
    await insert_keys(conn, user.id, keys, user.password_hash)
    return keys.recovery_code


async def create_user(
    engine: AsyncEngine,
    email: str,
    password: Password,
    crypto: CryptoConfig,
    *,
    crypt: int = 2,
    quota: int = 0,
    with_user: Callable[[AsyncConnection, UserId], Awaitable[None]] | None = None,
) -> NewAccount:
    """Add a user with its hash, keys and slots, all in one transaction.

    `with_user(conn, user_id)` runs in that transaction too: the store passes the
    creation of the default folders (it sits above this layer)."""
    password_hash = await hash_for_slot(password, crypto.argon2)
    keys = await prepare_keys(password, crypto)
    async with engine.begin() as conn:
        user = await add_user(conn, email, password_hash, crypt=crypt, quota=quota)
        await insert_keys(conn, user.id, keys, password_hash)
        if with_user is not None:
            await with_user(conn, user.id)
    return NewAccount(user, keys.recovery_code)
