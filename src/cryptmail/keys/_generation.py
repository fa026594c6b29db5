"""The credential generation of an account: a counter in its cm_accounts row.

Every change after which a cached login must not be served again (a password change,
recovery, an app password revoked, a key rotation) bumps it in the transaction that
makes the change, and writes a CREDENTIALS row to the change log (db/_changes.py) in
it, so every node hears of it at commit. The login cache of every process that shares
the database reads it before serving a login from memory, and drops its entry when it moved; the
`CredentialWatcher` of every process reads it for the users with live sessions and ends
their sessions when it moved (`_watcher`).
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptmail.db import ChangeKind, UserId, record_user_change
from cryptmail.db import tables as t
from cryptmail.users import fold_address


async def bump_generation(conn: AsyncConnection, user_id: int) -> None:
    """Move the user's generation on (no-op for a user without keys: nothing is cached)."""
    accounts = t.cm_accounts
    await conn.execute(
        update(accounts)
        .where(accounts.c.user_id == user_id)
        .values(credential_generation=accounts.c.credential_generation + 1)
    )
    # Every node hears of it at commit (db/_changes.py), not at its next poll.
    await conn.run_sync(record_user_change, user_id, ChangeKind.CREDENTIALS)


async def read_generation(conn: AsyncConnection, user_id: int) -> int | None:
    """The user's generation; None for a user without keys."""
    accounts = t.cm_accounts
    value = (
        await conn.execute(
            select(accounts.c.credential_generation).where(accounts.c.user_id == user_id)
        )
    ).scalar_one_or_none()
    return None if value is None else int(value)


async def read_generation_of(conn: AsyncConnection, email: str) -> int | None:
    """`read_generation` by login address, as `find_user` looks it up; None for an
    unknown user or one without keys."""
    accounts, users = t.cm_accounts, t.virtual_users
    value = (
        await conn.execute(
            select(accounts.c.credential_generation)
            .select_from(accounts.join(users, users.c.id == accounts.c.user_id))
            .where(func.lower(users.c.email) == fold_address(email))
        )
    ).scalar_one_or_none()
    return None if value is None else int(value)


_CHUNK = 500  # bound parameters per query (SQLite's limit was 999 before 3.32)


async def read_generations(
    conn: AsyncConnection, user_ids: Collection[UserId]
) -> dict[UserId, int]:
    """The generations of `user_ids`, one query per 500 ids; a user without keys (or
    gone) is missing from the answer."""
    accounts = t.cm_accounts
    ids = sorted(set(user_ids))
    found: dict[UserId, int] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = await conn.execute(
            select(accounts.c.user_id, accounts.c.credential_generation).where(
                accounts.c.user_id.in_(ids[start : start + _CHUNK])
            )
        )
        found.update({UserId(int(row.user_id)): int(row.credential_generation) for row in rows})
    return found
