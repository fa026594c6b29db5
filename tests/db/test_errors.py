"""The engine hooks turn each kind of driver error into ours, chained, without SQL."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pymysql
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.db import create_engine, run_transaction
from cryptmail.db._errors import translate
from cryptmail.errors import (
    DatabaseConflict,
    DatabaseError,
    DatabaseUnavailable,
    TransactionAborted,
)

SECRET = "secret-parameter"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (name TEXT PRIMARY KEY)"))
        await conn.execute(text("INSERT INTO t VALUES ('taken')"))
    yield engine
    await engine.dispose()


@pytest.fixture
def write_locked(tmp_path: Path) -> Iterator[None]:
    """Another connection holds the write lock of the database file."""
    other = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    yield
    other.execute("ROLLBACK")
    other.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _insert_taken(conn: Connection) -> None:
    conn.execute(text("INSERT INTO t VALUES (:name)"), {"name": "taken"})


def _no_sql(error: BaseException) -> None:
    assert "INSERT" not in str(error) and SECRET not in str(error)


async def test_a_unique_violation_is_a_conflict(engine: AsyncEngine) -> None:
    with pytest.raises(DatabaseConflict) as caught:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (:name)"), {"name": "taken"})
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
    assert "SQLITE_CONSTRAINT" in str(caught.value)
    _no_sql(caught.value)


async def test_a_unique_violation_in_run_transaction_is_a_conflict(engine: AsyncEngine) -> None:
    with pytest.raises(DatabaseConflict) as caught:
        await run_transaction(engine, _insert_taken)
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
    _no_sql(caught.value)


async def test_a_locked_database_is_unavailable(engine: AsyncEngine, write_locked: None) -> None:
    with pytest.raises(DatabaseUnavailable, match="locked") as caught:
        async with engine.begin() as conn:
            await conn.execute(text("PRAGMA busy_timeout=0"))
            await conn.execute(text("INSERT INTO t VALUES (:name)"), {"name": SECRET})
    assert "SQLITE_BUSY" in str(caught.value)
    _no_sql(caught.value)


async def test_a_locked_database_in_run_transaction_is_unavailable(
    engine: AsyncEngine, write_locked: None
) -> None:
    def work(conn: Connection) -> None:
        conn.execute(text("PRAGMA busy_timeout=0"))
        conn.execute(text("INSERT INTO t VALUES (:name)"), {"name": SECRET})

    with pytest.raises(DatabaseUnavailable, match="locked"):
        await run_transaction(engine, work, writes=False)


def test_a_busy_begin_on_the_raw_driver_is_unavailable(tmp_path: Path, write_locked: None) -> None:
    # run_transaction sends BEGIN IMMEDIATE past SQLAlchemy; the same table applies.
    raw = sqlite3.connect(tmp_path / "db.sqlite", timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as caught:
        raw.execute("BEGIN IMMEDIATE")
    raw.close()
    assert isinstance(translate(caught.value), DatabaseUnavailable)


async def test_a_missing_table_is_a_database_error_not_unavailable(engine: AsyncEngine) -> None:
    with pytest.raises(DatabaseError) as caught:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT * FROM nowhere"))
    assert type(caught.value) is DatabaseError
    assert "nowhere" not in str(caught.value)


async def test_an_unopenable_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()
    engine = create_engine(f"sqlite:///{tmp_path / 'dir.sqlite'}")
    try:
        # Through run_transaction's pysqlite engine: aiosqlite leaves the worker thread
        # of a connection that failed to open running past the test's event loop.
        with pytest.raises(DatabaseUnavailable, match="SQLITE_CANTOPEN"):
            await run_transaction(engine, lambda conn: conn.execute(text("SELECT 1")), writes=False)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("scheme", ["postgresql", "mysql", "mariadb"])
async def test_a_refused_connection_is_unavailable(scheme: str, closed_port: int) -> None:
    engine = create_engine(f"{scheme}://cryptmail:{SECRET}@127.0.0.1:{closed_port}/cryptmail")
    try:
        with pytest.raises(DatabaseUnavailable, match="check database.url") as caught:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert caught.value.__cause__ is not None
    assert SECRET not in str(caught.value)


def test_other_exceptions_pass_unchanged() -> None:
    assert translate(ValueError("a bug in a bind processor")) is None


async def test_sqlalchemys_own_probes_keep_its_errors(engine: AsyncEngine) -> None:
    # MySQL's has_table catches DBAPIError from a DESCRIBE it marks like this.
    with pytest.raises(DBAPIError):
        async with engine.connect() as conn:
            await conn.exec_driver_sql(
                "SELECT * FROM nowhere", execution_options={"skip_user_error_events": True}
            )


STATEMENT = "UPDATE t SET name = :p"


def _pymysql(number: int, message: str) -> tuple[BaseException, BaseException]:
    driver = pymysql.err.OperationalError(number, message)
    return driver, OperationalError(STATEMENT, {"p": SECRET}, driver)


def _asyncpg(error: type[asyncpg.PostgresError]) -> tuple[BaseException, BaseException]:
    # As SQLAlchemy's asyncpg dialect hands it on: its own Error with the SQLSTATE,
    # asyncpg's exception the cause; SQLAlchemy wraps that one.
    cause = error("it failed")
    driver = AsyncAdapt_asyncpg_dbapi.Error("it failed", cause)  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it untyped
    return driver, DBAPIError(STATEMENT, {"p": SECRET}, driver)


@pytest.mark.parametrize(
    ("errors", "code"),
    [
        (_pymysql(1213, "Deadlock found when trying to get lock"), "1213"),
        (_pymysql(1305, "SAVEPOINT sa_savepoint_1 does not exist"), "1305"),
        (_asyncpg(asyncpg.exceptions.DeadlockDetectedError), "40P01"),
        (_asyncpg(asyncpg.exceptions.SerializationError), "40001"),
    ],
    ids=["mysql-1213", "mysql-1305", "postgresql-40P01", "postgresql-40001"],
)
def test_a_deadlock_victim_or_serialization_failure_is_an_aborted_transaction(
    errors: tuple[BaseException, BaseException], code: str
) -> None:
    translated = translate(*errors)
    assert isinstance(translated, TransactionAborted)
    assert translated.code == code
    assert code in str(translated) and "running it again" in str(translated)
    _no_sql(translated)
    assert "UPDATE" not in str(translated)


@pytest.mark.parametrize(
    "errors",
    [
        _pymysql(1205, "Lock wait timeout exceeded"),
        _asyncpg(asyncpg.exceptions.LockNotAvailableError),
        _pymysql(2013, "Lost connection to server during query"),
        _asyncpg(asyncpg.exceptions.AdminShutdownError),
    ],
    ids=["mysql-1205", "postgresql-55P03", "mysql-2013", "postgresql-57P01"],
)
def test_lock_wait_timeouts_and_lost_connections_are_not_aborted_transactions(
    errors: tuple[BaseException, BaseException],
) -> None:
    translated = translate(*errors)
    assert isinstance(translated, DatabaseUnavailable)
    assert not isinstance(translated, TransactionAborted)


def test_a_deadlock_on_a_dropped_connection_is_only_unavailable() -> None:
    # The dialect saw the connection go: whether the transaction ended is not known.
    translated = translate(*_pymysql(1213, "Deadlock found"), disconnect=True)
    assert type(translated) is DatabaseUnavailable


async def test_sqlite_never_aborts_a_transaction(engine: AsyncEngine, write_locked: None) -> None:
    def work(conn: Connection) -> None:
        conn.execute(text("PRAGMA busy_timeout=0"))
        conn.execute(text("INSERT INTO t VALUES (:name)"), {"name": SECRET})

    with pytest.raises(DatabaseUnavailable) as caught:
        await run_transaction(engine, work, writes=False, retry=True)
    assert not isinstance(caught.value, TransactionAborted)
