"""Creating a user with keys: the hash, the account key, the key pair and the slots in
one transaction. The recovery code is returned once and stored nowhere but its slot."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.crypto import (
    code_lookup_id,
    generate_recovery_code,
    new_account_key,
    normalize_code,
)
from cryptmail.db import tables as t
from cryptmail.db import utcnow
from cryptmail.keys import _events as events
from cryptmail.keys._keyring import (
    insert_account,
    insert_key_pair,
    new_account_uuid,
    new_private_key,
)
from cryptmail.keys._slots import (
    PASSWORD,
    RECOVERY,
    hash_fingerprint,
    hash_for_slot,
    make_slot,
    slot_context,
)
from cryptmail.secret import Password
from cryptmail.users import User, add_user


@dataclass(frozen=True, repr=False)
class NewAccount:
    """A created user and the recovery code to show once."""

    user: User
    recovery_code: str | None

    def __repr__(self) -> str:
        return f"NewAccount(user={self.user!r})"


async def _prepare_slots(
    account_key: bytes,
    uuid: bytes,
    password: Password,
    crypto: CryptoConfig,
    with_recovery: bool,
) -> tuple[bytes, str | None, bytes | None]:
    password_record = await make_slot(
        account_key, password, crypto.argon2, slot_context(uuid, PASSWORD, "")
    )
    if not with_recovery:
        return password_record, None, None
    code = generate_recovery_code()
    normalized = normalize_code(code)
    assert normalized is not None  # noqa: S101 - generated codes are always valid
    recovery_record = await make_slot(
        account_key,
        Password.from_str(normalized),
        crypto.argon2,
        slot_context(uuid, RECOVERY, ""),
    )
    return password_record, code, recovery_record


async def insert_slot(
    conn: AsyncConnection,
    user_id: int,
    kind: str,
    record: bytes,
    *,
    name: str = "",
    lookup_id: bytes | None = None,
    fingerprint: bytes | None = None,
) -> None:
    await conn.execute(
        t.cm_key_slots.insert().values(
            user_id=user_id,
            kind=kind,
            name=name,
            lookup_id=lookup_id,
            record=record,
            hash_fingerprint=fingerprint,
            created_at=utcnow(),
        )
    )


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
    account_key = new_account_key()
    uuid = new_account_uuid()
    password_record, code, recovery_record = await _prepare_slots(
        account_key, uuid, password, crypto, with_recovery
    )
    await insert_account(conn, user.id, uuid)
    await insert_key_pair(conn, user.id, account_key, new_private_key(crypto.curve))
    await insert_slot(
        conn,
        user.id,
        PASSWORD,
        password_record,
        fingerprint=hash_fingerprint(user.password_hash),
    )
    if code is not None and recovery_record is not None:
        normalized = normalize_code(code)
        assert normalized is not None  # noqa: S101 - generated codes are always valid
        await insert_slot(
            conn, user.id, RECOVERY, recovery_record, lookup_id=code_lookup_id(normalized)
        )
    await events.record_event(conn, user.id, events.KEY_CREATED)
    return code


async def create_user(
    engine: AsyncEngine,
    email: str,
    password: Password,
    crypto: CryptoConfig,
    *,
    crypt: int = 2,
    quota: int = 0,
    with_user: Callable[[AsyncConnection, int], Awaitable[None]] | None = None,
) -> NewAccount:
    """Add a user with its hash, keys and slots, all in one transaction.

    `with_user(conn, user_id)` runs in that transaction too: the store passes the
    creation of the default folders (it sits above this layer)."""
    password_hash = await hash_for_slot(password, crypto.argon2)
    async with engine.begin() as conn:
        user = await add_user(conn, email, password_hash, crypt=crypt, quota=quota)
        code = await provision_keys(conn, user, password, crypto)
        if with_user is not None:
            await with_user(conn, user.id)
    return NewAccount(user, code)
