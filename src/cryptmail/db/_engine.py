"""The async engine: one per process, made from the configured URL.

Users give plain SQLAlchemy URLs (`sqlite:///…`, `mysql+pymysql://…`,
`postgresql://…`); we swap in the async driver of each dialect.

`run_transaction` runs a short synchronous transaction body. On a SQLite file it runs
the whole body in one worker-thread call on a plain sqlite3 connection: aiosqlite hops
to its thread three or four times per statement (cursor, execute, fetch, close), and on
the delivery path those hops cost more CPU than the statements themselves. Its write
transactions begin IMMEDIATE, so what they read before their first write is read under
the write lock, and they queue first: on a lock of this process, then on an `flock` of
`<database>-writers` shared with every other process (serve's LMTP workers; `_writers`). SQLite's
own wait for a busy database sleeps in steps of milliseconds, which concurrent
deliveries would pay; a queue wakes the next writer the moment the last one commits.

Those connections run with synchronous=NORMAL, and `run_transaction` fsyncs the WAL
itself once a write transaction committed, after the writer turn is given back: the
same durability as synchronous=FULL (which is that one fsync of the WAL at each commit;
checkpoints sync alike in both modes), with the fsync out of the turn. Under FULL every
writer of every process waited for the others' fsyncs in turn; now they overlap, and
one fsync covers every commit before it. A delivery still answers only after its
commit is on disk. The async engine's connections keep FULL.

On MariaDB/MySQL and PostgreSQL, a transaction that lost a deadlock or a serialization
check is rolled back whole by the server (TransactionAborted); `run_transaction` runs
it again, a bounded number of times, for the callers that say their work allows it
(`retry=True`). SQLite needs none: its writers queue and begin IMMEDIATE.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sqlite3
import threading
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from cryptmail.concurrency import run_blocking
from cryptmail.db._errors import install_error_hooks, translate
from cryptmail.db._writers import WRITER_WAIT_S, WriteQueue
from cryptmail.errors import ConfigError, DatabaseUnavailable, TransactionAborted

T = TypeVar("T")

log = logging.getLogger(__name__)

ATTEMPTS = 3
"""How many times in all `run_transaction(..., retry=True)` runs a transaction the
database aborted (TransactionAborted) before it lets the error through."""
_BACKOFF_S = (0.005, 0.025)
"""The random pause before attempt n + 1 lies in n times this range: 5-25 ms, then
10-50 ms. Random, so two transactions that deadlocked do not meet again in step."""

_sync_lock = threading.Lock()
_sync_engines: weakref.WeakKeyDictionary[AsyncEngine, Engine | None] = weakref.WeakKeyDictionary()

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
    "postgresql": "postgresql+asyncpg",
}


def async_url(url: str) -> str:
    """The same URL with the async driver of its dialect."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database URL is not valid: {exc}") from exc
    dialect = parsed.get_backend_name()
    if dialect not in _ASYNC_DRIVERS:
        raise ConfigError(
            f"database dialect {dialect!r} is not supported; use sqlite, mysql or postgresql"
        )
    return parsed.set(drivername=_ASYNC_DRIVERS[dialect]).render_as_string(hide_password=False)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An AsyncEngine for `url`. For SQLite: WAL, synchronous=FULL, foreign keys on."""
    target = async_url(url)
    parsed = make_url(target)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(target, connect_args={"timeout": WRITER_WAIT_S}, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        install_error_hooks(engine.sync_engine)
        return engine
    if parsed.get_backend_name() == "mysql":
        kwargs.setdefault("pool_recycle", 3600)
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_async_engine(target, **kwargs)
    install_error_hooks(engine.sync_engine)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    _set_pragmas(dbapi_connection, synced_after=False)


def _sqlite_pragmas_synced_after(dbapi_connection: Any, _record: Any) -> None:
    """For `run_transaction`'s connections: NORMAL, which `_sync_wal` completes."""
    _set_pragmas(dbapi_connection, synced_after=True)


def _set_pragmas(dbapi_connection: Any, *, synced_after: bool) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    mode = cursor.fetchone()[0]
    # synchronous=FULL, or NORMAL with `_sync_wal` after each commit: a committed
    # delivery survives power loss, not only a crash. NORMAL only in WAL mode (a file
    # system without shared memory keeps the rollback journal, where NORMAL would not
    # be durable and there is no WAL to sync).
    synchronous = "NORMAL" if synced_after and str(mode).lower() == "wal" else "FULL"
    for pragma in (
        f"PRAGMA synchronous={synchronous}",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA busy_timeout={int(WRITER_WAIT_S * 1000)}",
    ):
        cursor.execute(pragma)
    cursor.close()


def _sync_wal(database: str) -> None:
    """fsync the WAL of ``database``: every transaction committed in it so far is then
    on disk (what synchronous=FULL does at each commit). No WAL file means the last
    connection closed, which checkpointed it into the database file and synced that
    first. DatabaseUnavailable when the disk refuses: the commit may not be durable."""
    try:
        fd = os.open(database + "-wal", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise DatabaseUnavailable(f"cannot open the database's WAL: {exc.strerror}") from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise DatabaseUnavailable(
            f"writing the database's WAL to disk failed: {exc.strerror}"
        ) from exc
    finally:
        os.close(fd)


def _sync_engine(engine: AsyncEngine) -> Engine | None:
    """A pysqlite engine on the same SQLite file (same pragmas), or None for other DBs.

    It is disposed with `engine` (`await engine.dispose()`, which whoever made the
    engine calls), its writer queue's descriptor closed with it, so its pooled
    connections (and their file handles) do not outlive the async engine; and, should
    nobody dispose it, when `engine` is collected.
    """
    with _sync_lock:
        if engine in _sync_engines:
            return _sync_engines[engine]
        url = engine.url
        sync: Engine | None = None
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            sync = create_sync_engine(
                url.set(drivername="sqlite+pysqlite"),
                connect_args={"timeout": WRITER_WAIT_S, "check_same_thread": False},
                pool_size=4,
            )
            event.listen(sync, "connect", _sqlite_pragmas_synced_after)
            event.listen(sync, "connect", _driver_leaves_transactions_to_us)
            install_error_hooks(sync)
            # The hook holds `sync`, not `engine`: no cycle keeps the engine alive.
            event.listen(engine.sync_engine, "engine_disposed", _disposer(sync))
            weakref.finalize(engine, sync.dispose)
        _sync_engines[engine] = sync
        return sync


def _disposer(sync: Engine) -> Callable[[Engine], None]:
    def dispose(_async_side: Engine) -> None:
        sync.dispose()
        with _sync_lock:
            queue = _write_queues.get(sync)
        if queue is not None:
            queue.close()

    return dispose


def _driver_leaves_transactions_to_us(dbapi_connection: Any, _record: Any) -> None:
    # sqlite3 would otherwise send BEGIN only before the first INSERT/UPDATE/DELETE, so
    # the SELECTs before it would run outside the transaction. run_transaction sends it.
    dbapi_connection.isolation_level = None


def _begin(conn: Connection, sql: str) -> None:
    """Open the transaction on the driver's connection, under SQLAlchemy's. Not through a
    `begin` event: any connection event makes SQLAlchemy run its event machinery around
    every statement, a fifth of a short transaction's CPU."""
    driver = conn.connection.driver_connection
    assert driver is not None  # noqa: S101 - a checked-out connection has one
    try:
        driver.execute(sql)
    except sqlite3.Error as error:  # past SQLAlchemy, so past its error hook
        raise (translate(error) or error) from error


_write_queues: weakref.WeakKeyDictionary[Engine, WriteQueue] = weakref.WeakKeyDictionary()


async def run_transaction(
    engine: AsyncEngine,
    work: Callable[[Connection], T],
    *,
    writes: bool = True,
    retry: bool = False,
) -> T:
    """Run `work(conn)` in one transaction, committed if it returns, rolled back if it raises.

    `work` is synchronous and must not block on anything but the database. On SQLite it
    runs in one worker-thread call; elsewhere through the async driver (`run_sync`).
    `writes=False` promises that `work` normally only reads: on SQLite it then neither
    queues behind this process's writers nor takes the write lock up front (a write it
    does make anyway still works, waiting for the lock the usual way).

    `retry=True` promises that `work` is safe to run again: all it does is talk to the
    database through `conn` and compute its return value from what it read, so a run
    whose transaction was rolled back leaves no trace. It must not change anything it
    did not create itself in that call: no appending to a list or dict it was given or
    closes over, no setting attributes of objects that outlive the call, no `nonlocal`,
    no sending, publishing, writing a file or a blob, no drawing a number that must be
    drawn once. Reading the caller's values (parameters sealed beforehand), sealing
    afresh and raising are fine; so is a log line, which a retry may then repeat.
    With it, a transaction the database aborted to resolve a conflict
    (TransactionAborted: a deadlock victim, a serialization failure) runs again from
    its start, up to ATTEMPTS times in all, after a short random pause; any other
    error, and the last attempt's TransactionAborted, goes to the caller. SQLite never
    aborts a transaction that way (writers queue), so there it changes nothing.

    Raises whatever `work` raises; the database's errors arrive as TransactionAborted,
    DatabaseUnavailable, DatabaseConflict or DatabaseError (see `_errors`).
    """
    sync = _sync_engine(engine)
    if sync is None:

        async def once() -> T:
            async with engine.begin() as conn:
                return await conn.run_sync(work)

        return await _retrying(once, retry=retry)

    database = sync.url.database
    assert database is not None  # noqa: S101 - _sync_engine: a file

    def _read() -> T:
        with sync.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None  # noqa: S101 - a checked-out connection has one
            changes = driver.total_changes
            _begin(conn, "BEGIN")
            with conn.begin():
                out = work(conn)
            wrote = driver.total_changes != changes
        if wrote:  # a read that wrote after all: as durable as any write
            _sync_wal(database)
        return out

    def _write() -> T:
        with _write_queue(sync).turn(), sync.connect() as conn:
            _begin(conn, "BEGIN IMMEDIATE")
            with conn.begin():
                out = work(conn)
        _sync_wal(database)  # after the turn: the next writer commits meanwhile
        return out

    return await run_blocking(_write if writes else _read)


async def run_async_transaction(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    retry: bool = False,
) -> T:
    """Run `await work(conn)` in one transaction on an async connection (`engine.begin()`),
    for bodies written against the async API (COPY and MOVE).

    `retry=True` makes the same promise about `work` as in `run_transaction` (it only
    talks to the database through `conn`), and runs a transaction the database aborted
    again the same way.
    """

    async def once() -> T:
        async with engine.begin() as conn:
            return await work(conn)

    return await _retrying(once, retry=retry)


async def _retrying(once: Callable[[], Awaitable[T]], *, retry: bool) -> T:
    """`once()`, and with `retry` again after a TransactionAborted, ATTEMPTS times in all."""
    attempt = 1
    while True:
        try:
            return await once()
        except TransactionAborted as aborted:
            if not retry or attempt >= ATTEMPTS:
                raise
            log.info(
                "database aborted a transaction (%s), attempt %d of %d; running it again",
                aborted.code or "no code",
                attempt,
                ATTEMPTS,
            )
            low, high = _BACKOFF_S
            await asyncio.sleep(random.uniform(low, high) * attempt)  # noqa: S311 - jitter, no secret
            attempt += 1


def _write_queue(sync: Engine) -> WriteQueue:
    with _sync_lock:
        queue = _write_queues.get(sync)
        if queue is None:
            assert sync.url.database is not None  # noqa: S101 - _sync_engine: a file
            queue = _write_queues[sync] = WriteQueue(sync.url.database)
        return queue
