"""Helpers for tests that play a database writer: swap sealed columns, and write
fields in the formats used before field version 3."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.crypto import FieldCipher, derive_data_key
from cryptmail.keys import UnlockedAccount


def legacy_seal(account: UnlockedAccount, value: bytes, context: bytes) -> bytes:
    """A version-1 field, as sealed before version 3: the data key itself as the AES key
    (an account that was never re-keyed derives it from its account key)."""
    data_key = derive_data_key(account.account_key.reveal())
    assert FieldCipher(data_key).lookup(b"x", b"y") == account.fields.lookup(b"x", b"y")
    nonce = os.urandom(12)
    return b"\x01" + nonce + AESGCM(data_key).encrypt(nonce, value, b"cryptmail/v1/field" + context)


async def swap(
    engine: AsyncEngine, table: Table, column: str, where: str, a: object, b: object
) -> None:
    """Swap `column` between the rows whose `where` column is `a` and `b`."""
    col, key = table.c[column], table.c[where]
    async with engine.begin() as conn:
        first = (await conn.execute(select(col).where(key == a))).scalar_one()
        second = (await conn.execute(select(col).where(key == b))).scalar_one()
        # Through a placeholder: a unique column refuses two rows with one value.
        await conn.execute(update(table).where(key == a).values({column: b"\x00" * 32}))
        await conn.execute(update(table).where(key == b).values({column: first}))
        await conn.execute(update(table).where(key == a).values({column: second}))
