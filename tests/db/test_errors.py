"""The engine hooks turn each kind of driver error into ours, chained, without SQL."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.db import create_engine, run_transaction
from cryptmail.db._errors import translate
from cryptmail.errors import DatabaseConflict, DatabaseError, DatabaseUnavailable

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
