"""Key pairs and data keys in SQL: create an account's keys, load and unlock them,
rotate, list.

A user's private keys and data keys are sealed under the account key (crypto._account);
the public key of the active pair is what delivery seals new mail to. An account never
re-keyed has no cm_data_keys rows: its one data key is derived from its account key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptmail.crypto import (
    CurveName,
    FieldCipher,
    PrivateKey,
    PublicKeyInfo,
    derive_data_key,
    export_private_key_pem,
    generate_private_key,
    open_data_key,
    open_private_key,
    public_info,
    seal_private_key,
)
from cryptmail.db import UserId, utcnow
from cryptmail.db import tables as t
from cryptmail.errors import NoKeyPair
from cryptmail.keys._account import AccountKey, UnlockedAccount
from cryptmail.secret import SecretBytes
from cryptmail.users import User


@dataclass(frozen=True)
class KeyPairInfo:
    """What `key list` shows: nothing secret."""

    key_id: bytes
    curve: str
    created_at: datetime
    active: bool

    @property
    def fingerprint(self) -> str:
        hexid = self.key_id.hex()
        return ":".join(hexid[i : i + 4] for i in range(0, 32, 4))


async def insert_account(conn: AsyncConnection, user_id: UserId, account_uuid: bytes) -> None:
    await conn.execute(
        t.cm_accounts.insert().values(
            user_id=user_id, account_uuid=account_uuid, created_at=utcnow()
        )
    )


async def insert_key_pair(
    conn: AsyncConnection,
    user_id: UserId,
    account_key: bytes,
    private_key: PrivateKey,
    *,
    active: bool = True,
) -> PublicKeyInfo:
    """Store `private_key` sealed under `account_key`; make it active (the others not)."""
    info = public_info(private_key)
    if active:
        await conn.execute(
            update(t.cm_key_pairs).where(t.cm_key_pairs.c.user_id == user_id).values(active=False)
        )
    await conn.execute(
        t.cm_key_pairs.insert().values(
            user_id=user_id,
            key_id=info.key_id,
            curve=info.curve,
            public_key=info.encoded,
            private_sealed=seal_private_key(account_key, private_key, info.key_id),
            active=active,
            created_at=utcnow(),
        )
    )
    return info


def new_account_uuid() -> bytes:
    return os.urandom(16)


def new_private_key(curve: CurveName) -> PrivateKey:
    return generate_private_key(curve)


async def account_uuid(conn: AsyncConnection, user_id: UserId) -> bytes | None:
    row = (
        await conn.execute(
            select(t.cm_accounts.c.account_uuid).where(t.cm_accounts.c.user_id == user_id)
        )
    ).first()
    return bytes(row.account_uuid) if row is not None else None


async def account_state(conn: AsyncConnection, user_id: UserId) -> tuple[bytes, int] | None:
    """The account uuid and the generation of its account key, or None without keys."""
    row = (
        await conn.execute(
            select(t.cm_accounts.c.account_uuid, t.cm_accounts.c.generation).where(
                t.cm_accounts.c.user_id == user_id
            )
        )
    ).first()
    return (bytes(row.account_uuid), int(row.generation)) if row is not None else None


async def data_keys(conn: AsyncConnection, user_id: UserId, account_key: bytes) -> dict[int, bytes]:
    """Every data key of the account by generation, opened with `account_key`."""
    rows = (
        await conn.execute(select(t.cm_data_keys).where(t.cm_data_keys.c.user_id == user_id))
    ).all()
    if not rows:
        return {0: derive_data_key(account_key)}
    return {
        int(r.generation): open_data_key(account_key, bytes(r.sealed), int(r.generation))
        for r in rows
    }


async def active_public_key(conn: AsyncConnection, user_id: UserId) -> PublicKeyInfo | None:
    """The key new mail is sealed to, or None if the user has no keys yet."""
    row = (
        await conn.execute(
            select(t.cm_key_pairs.c.curve, t.cm_key_pairs.c.public_key).where(
                t.cm_key_pairs.c.user_id == user_id, t.cm_key_pairs.c.active.is_(True)
            )
        )
    ).first()
    if row is None:
        return None
    return PublicKeyInfo(row.curve, bytes(row.public_key))


async def list_key_pairs(conn: AsyncConnection, user_id: UserId) -> list[KeyPairInfo]:
    rows = await conn.execute(
        select(t.cm_key_pairs)
        .where(t.cm_key_pairs.c.user_id == user_id)
        .order_by(t.cm_key_pairs.c.created_at, t.cm_key_pairs.c.id)
    )
    return [KeyPairInfo(bytes(r.key_id), str(r.curve), r.created_at, bool(r.active)) for r in rows]


async def open_account(
    conn: AsyncConnection, user: User, uuid: bytes, account_key: bytes
) -> UnlockedAccount:
    """Unseal every private key and data key of `user` with `account_key`."""
    state = await account_state(conn, user.id)
    generation = state[1] if state is not None else 0
    keys = await data_keys(conn, user.id, account_key)
    rows = (
        await conn.execute(select(t.cm_key_pairs).where(t.cm_key_pairs.c.user_id == user.id))
    ).all()
    if not rows:
        raise NoKeyPair(f"user {user.email} has no key pair")
    private_keys: dict[bytes, PrivateKey] = {}
    active: PublicKeyInfo | None = None
    for row in rows:
        key_id = bytes(row.key_id)
        private_keys[key_id] = open_private_key(account_key, bytes(row.private_sealed), key_id)
        if row.active:
            active = PublicKeyInfo(row.curve, bytes(row.public_key))
    if active is None:
        raise NoKeyPair(f"user {user.email} has no active key pair; run `cryptmail key rotate`")
    return UnlockedAccount(
        user=user,
        account_uuid=uuid,
        account_key=SecretBytes(account_key),
        private_keys=private_keys,
        active_key=active,
        fields=FieldCipher(keys.pop(0), keys),
        generation=generation,
    )


async def open_private_keys(engine: AsyncEngine, key: AccountKey) -> UnlockedAccount:
    """Unseal every private key of the account `key` opened. Raises NoKeyPair."""
    async with engine.connect() as conn:
        account = await open_account(conn, key.user, key.account_uuid, key.account_key.reveal())
    if key.credential_generation is None:
        return account
    return replace(account, credential_generation=key.credential_generation)


def export_private_keys(account: UnlockedAccount, passphrase: bytes | None) -> list[bytes]:
    """Every private key of the account as PKCS#8 PEM (encrypted when given a passphrase)."""
    return [export_private_key_pem(k, passphrase) for k in account.private_keys.values()]
