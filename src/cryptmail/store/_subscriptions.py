"""IMAP subscriptions: one sealed row per subscribed name.

A subscribed name need not exist (RFC 3501 6.3.6), so a row holds the name sealed
under the data key, keyed by the same keyed hash as folder names. The six default
folders are subscribed the first time a session holding the key asks; a marker in
``cm_user_settings`` keeps that from happening again after the user unsubscribes one.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptmail.db import UserId
from cryptmail.db import tables as t
from cryptmail.errors import DatabaseConflict
from cryptmail.keys import UnlockedAccount
from cryptmail.store._mailboxes import DEFAULT_MAILBOXES, check_name

_SEEDED: Final = "subscriptions-seeded"


def _context(user_id: UserId) -> bytes:
    return b"subscription|" + str(user_id).encode()


def _canonical(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else name


async def _insert(conn: AsyncConnection, account: UnlockedAccount, name: str) -> None:
    user_id = account.user.id
    data = name.encode("utf-8")
    lookup = account.fields.lookup(data, _context(user_id))
    sub = t.cm_subscriptions
    found = await conn.execute(
        select(sub.c.user_id).where(sub.c.user_id == user_id, sub.c.name_lookup == lookup)
    )
    if found.first() is not None:
        return
    try:
        async with conn.begin_nested():
            await conn.execute(
                sub.insert().values(
                    user_id=user_id,
                    name_lookup=lookup,
                    name_sealed=account.fields.seal(data, _context(user_id)),
                )
            )
    except DatabaseConflict:
        pass  # another session subscribed the same name meanwhile


async def _seed_defaults(conn: AsyncConnection, account: UnlockedAccount) -> None:
    user_id = account.user.id
    st = t.cm_user_settings
    found = await conn.execute(
        select(st.c.name).where(st.c.user_id == user_id, st.c.name == _SEEDED)
    )
    if found.first() is not None:
        return
    try:
        async with conn.begin_nested():
            await conn.execute(
                st.insert().values(
                    user_id=user_id,
                    name=_SEEDED,
                    value_sealed=account.fields.seal(b"1", _context(user_id)),
                )
            )
    except DatabaseConflict:
        return  # another session seeds them
    for name, _attribute in DEFAULT_MAILBOXES.values():
        await _insert(conn, account, name)


async def subscribe(conn: AsyncConnection, account: UnlockedAccount, name: str) -> None:
    """Add `name` to the user's subscriptions; raises StoreError for an invalid name."""
    name = _canonical(check_name(name))
    await _seed_defaults(conn, account)
    await _insert(conn, account, name)


async def unsubscribe(conn: AsyncConnection, account: UnlockedAccount, name: str) -> bool:
    """Remove `name`; returns whether it was subscribed."""
    name = _canonical(name)
    await _seed_defaults(conn, account)
    user_id = account.user.id
    lookup = account.fields.lookup(name.encode("utf-8"), _context(user_id))
    sub = t.cm_subscriptions
    result = await conn.execute(
        delete(sub).where(sub.c.user_id == user_id, sub.c.name_lookup == lookup)
    )
    return bool(result.rowcount)


async def list_subscriptions(conn: AsyncConnection, account: UnlockedAccount) -> set[str]:
    """Every subscribed name (existing or not); seeds the defaults on first use."""
    await _seed_defaults(conn, account)
    user_id = account.user.id
    sub = t.cm_subscriptions
    rows = await conn.execute(select(sub.c.name_sealed).where(sub.c.user_id == user_id))
    return {
        account.fields.open(bytes(r.name_sealed), _context(user_id)).decode("utf-8") for r in rows
    }
