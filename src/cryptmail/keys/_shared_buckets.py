"""The login throttle's failure buckets in the shared database, so that a password
guessed on one node is counted on every node.

Only failures are written: the tokens an attempt holds while its password is checked
stay in the node's own `BucketTable` (`_throttle`), which the shared level lowers before
every attempt. A bucket is one number, the time it is full again (`full_at`, seconds
since the epoch, as in GCRA): its level at `now` is `burst - (full_at - now) / refill`,
and a failure moves `full_at` to `max(full_at, now) + refill` in one atomic upsert, so
failures on several nodes at once all count. Rows past their `full_at` carry no memory
and are deleted (`prune`).

Rows are keyed by an HMAC of the bucket key (the address tried, or the client address)
under a subkey of the server key, which every node shares: the table holds neither
addresses nor client addresses. Node clocks are assumed NTP-close; a skew of a second
moves a bucket by a fraction of a token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, case, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert

from cryptmail.db import run_transaction
from cryptmail.db import tables as t
from cryptmail.keys._server_key import server_key

log = logging.getLogger(__name__)

_LABEL: Final = b"cryptmail login throttle bucket v1"
_failures = t.cm_login_failures


@dataclass(frozen=True)
class SharedKey:
    """One bucket as the database knows it."""

    key_hash: bytes
    burst: int
    refill_s: float


def bucket_hash_key() -> bytes:
    """The HMAC key that names buckets, from this process's server key (the same on
    every node). Raises ConfigError when no server key is loaded."""
    return hmac.new(server_key().delivery_tag_key(), _LABEL, hashlib.sha256).digest()


class SharedBuckets:
    """Failure buckets in cm_login_failures; see the module docstring."""

    def __init__(
        self,
        engine: AsyncEngine,
        hash_key: bytes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._hash_key = hash_key
        self._clock = clock

    def key(self, name: str, burst: int, refill_s: float) -> SharedKey:
        digest = hmac.new(self._hash_key, name.encode("utf-8"), hashlib.sha256).digest()
        return SharedKey(digest[:16], burst, refill_s)

    async def levels(self, keys: Sequence[SharedKey]) -> dict[bytes, float]:
        """The level of each bucket that owes tokens now (a full one is missing).
        One indexed read. Raises DatabaseUnavailable."""
        wanted = {k.key_hash: k for k in keys}
        now = self._clock()

        def read(conn: Connection) -> dict[bytes, float]:
            rows = conn.execute(
                select(_failures.c.key_hash, _failures.c.full_at).where(
                    _failures.c.key_hash.in_(list(wanted))
                )
            ).all()
            found: dict[bytes, float] = {}
            for row in rows:
                key = wanted[bytes(row.key_hash)]
                owed = max(0.0, float(row.full_at) - now) / key.refill_s
                if owed > 0:
                    found[key.key_hash] = key.burst - owed
            return found

        return await run_transaction(self._engine, read, writes=False)

    async def spend(self, keys: Sequence[SharedKey]) -> None:
        """Record one failure in each bucket, atomically with other nodes' failures.
        Raises DatabaseUnavailable."""
        now = self._clock()

        def write(conn: Connection) -> None:
            for key in sorted(keys, key=lambda k: k.key_hash):  # one lock order
                conn.execute(_upsert(conn.dialect.name, key, now))

        # Failures of one address from many connections and nodes at once are what this
        # counts; a deadlock victim among their upserts runs again.
        await run_transaction(self._engine, write, retry=True)

    async def prune(self) -> int:
        """Delete the buckets that are full again; how many."""
        now = self._clock()

        def work(conn: Connection) -> int:
            return int(conn.execute(delete(_failures).where(_failures.c.full_at < now)).rowcount)

        return await run_transaction(self._engine, work, retry=True)


def _upsert(dialect: str, key: SharedKey, now: float) -> Insert:
    """INSERT ... ON CONFLICT / ON DUPLICATE KEY: full_at = max(full_at, now) + refill."""
    values = {"key_hash": key.key_hash, "full_at": now + key.refill_s}
    # Each dialect's module imported here, for the one in use: a dialect package loads
    # the whole dialect (PostgreSQL's about 2 MiB, MySQL's 1 MiB) in every process.
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        pg = postgresql.insert(_failures).values(values)
        current = _failures.c.full_at
        return pg.on_conflict_do_update(
            index_elements=[_failures.c.key_hash],
            set_={"full_at": case((current > now, current), else_=now) + key.refill_s},
        )
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects import mysql

        my = mysql.insert(_failures).values(values)
        current = _failures.c.full_at
        return my.on_duplicate_key_update(
            full_at=case((current > now, current), else_=now) + key.refill_s
        )
    from sqlalchemy.dialects import sqlite

    lite = sqlite.insert(_failures).values(values)
    current = _failures.c.full_at
    return lite.on_conflict_do_update(
        index_elements=[_failures.c.key_hash],
        set_={"full_at": case((current > now, current), else_=now) + key.refill_s},
    )
