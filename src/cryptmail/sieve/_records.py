"""Vacation and duplicate records (cm_sieve_records): keyed hashes with an expiry.

The hash is `crypto.sieve_record` under the server key's subkey, so the table holds no
address and no Message-ID (docs/security.md, "Sieve records at delivery").
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.crypto import sieve_record
from cryptmail.db import UserId, run_transaction, utcnow
from cryptmail.db import tables as t
from cryptmail.errors import DatabaseConflict
from cryptmail.keys import server_key

_r = t.cm_sieve_records


def vacation_record(user_id: UserId, sender: str, handle: str) -> bytes:
    return sieve_record(
        server_key().sieve_record_key(), user_id, "vacation", [sender.lower(), handle]
    )


def duplicate_record(user_id: UserId, handle: str, unique_id: str) -> bytes:
    return sieve_record(server_key().sieve_record_key(), user_id, "duplicate", [handle, unique_id])


REDIRECT_RECORD_SECONDS = 12 * 3600
"""How long a sent redirect is remembered against a retry of the same copy: Pigeonhole's
`sieve_redirect_duplicate_period` default. A retry later than this sends it again."""


def redirect_record(user_id: UserId, copy_digest: bytes, address: str) -> bytes:
    """A redirect of one copy (`copy_digest`, the digest its retry tag is made from) to
    `address`, sent already: the retry after a crash before our 250 does not send it again."""
    return sieve_record(
        server_key().sieve_record_key(), user_id, "redirect", [copy_digest.hex(), address.lower()]
    )


def record_live(conn: Connection, user_id: UserId, record: bytes) -> bool:
    """Whether `record` exists and has not expired."""
    row = conn.execute(
        select(_r.c.expires_at).where(_r.c.user_id == user_id, _r.c.record == record)
    ).first()
    return row is not None and row.expires_at > utcnow()


def _note(conn: Connection, user_id: UserId, record: bytes, seconds: int, extend: bool) -> None:
    expires = utcnow() + timedelta(seconds=seconds)
    row = conn.execute(
        select(_r.c.expires_at).where(_r.c.user_id == user_id, _r.c.record == record)
    ).first()
    if row is None:
        try:
            with conn.begin_nested():
                conn.execute(_r.insert().values(user_id=user_id, record=record, expires_at=expires))
        except DatabaseConflict:
            pass  # a parallel delivery wrote it first: the record exists, as wanted
        return
    if extend or row.expires_at <= utcnow():
        conn.execute(
            update(_r)
            .where(_r.c.user_id == user_id, _r.c.record == record)
            .values(expires_at=expires)
        )


async def seen_record(engine: AsyncEngine, user_id: UserId, record: bytes) -> bool:
    return await run_transaction(
        engine, lambda conn: record_live(conn, user_id, record), writes=False
    )


async def note_record(
    engine: AsyncEngine, user_id: UserId, record: bytes, seconds: int, *, extend: bool = False
) -> None:
    """Remember `record` for `seconds`; an expired one starts again, a live one keeps
    its expiry unless `extend` (duplicate :last measures from the latest message)."""
    await run_transaction(
        engine, lambda conn: _note(conn, user_id, record, seconds, extend), retry=True
    )


async def claim_record(engine: AsyncEngine, user_id: UserId, record: bytes, seconds: int) -> bool:
    """Write `record` unless it is live, in one transaction: True if this caller wrote
    it. Two deliveries from the same sender at once send one vacation reply."""

    def work(conn: Connection) -> bool:
        if record_live(conn, user_id, record):
            return False
        # Only an expired one: the check above read a snapshot, and on MariaDB and
        # PostgreSQL a claim committed since is seen by this delete but was not by that
        # read. Deleting it too let seven of eight parallel claims win (seven vacation
        # replies); kept, it makes the insert below conflict, and this claim lose.
        conn.execute(
            delete(_r).where(
                _r.c.user_id == user_id, _r.c.record == record, _r.c.expires_at <= utcnow()
            )
        )
        try:
            with conn.begin_nested():
                conn.execute(
                    _r.insert().values(
                        user_id=user_id,
                        record=record,
                        expires_at=utcnow() + timedelta(seconds=seconds),
                    )
                )
        except DatabaseConflict:
            return False
        return True

    # Two deliveries claiming one record at once is this function's normal case, and on
    # MariaDB their delete and insert can deadlock: the victim runs again, finds the
    # other's record live and returns False, as if it had come second.
    return await run_transaction(engine, work, retry=True)


async def expire_records(engine: AsyncEngine) -> int:
    """Delete expired records of every user; returns how many."""

    def work(conn: Connection) -> int:
        return int(conn.execute(delete(_r).where(_r.c.expires_at <= utcnow())).rowcount)

    return await run_transaction(engine, work, retry=True)
