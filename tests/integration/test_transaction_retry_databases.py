"""run_transaction's retry on MariaDB and PostgreSQL: a transaction the server aborted to
resolve a deadlock runs again (whole, and only for callers that allow it, `retry=True`),
at most ATTEMPTS times; every other error reaches the caller after one run.

The deadlock is a real one: another connection holds row 2 (and many more, so MariaDB,
which rolls back the lighter transaction, picks ours), our work locks row 1 and then
waits for row 2, and only then does the other connection ask for row 1. PostgreSQL
aborts the waiter whose deadlock_timeout ends first, which is ours, the first to wait.
Errors the test cannot make by choreography (a deadlock on every attempt) are raised by
the server itself with the same code (PostgreSQL's RAISE, MariaDB's SIGNAL), so they
reach run_transaction through the real driver and our engine hooks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptmail.db import create_engine, run_async_transaction, run_transaction
from cryptmail.db._engine import ATTEMPTS
from cryptmail.errors import DatabaseConflict, DatabaseUnavailable, TransactionAborted

from .servers import Database

ROWS = 40


@pytest.fixture(params=["mariadb", "postgresql"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    server = "mariadb_database" if request.param == "mariadb" else "postgres_database"
    database: Database = request.getfixturevalue(server)
    engine = create_engine(str(database.url))
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        await conn.execute(
            text("INSERT INTO t (id, n) VALUES (:id, 0)"), [{"id": i} for i in range(1, ROWS + 1)]
        )
    yield engine
    await engine.dispose()


async def _wait_for_a_lock_wait(other: AsyncConnection) -> None:
    """Until some transaction waits for a row lock (PostgreSQL only: MariaDB's victim
    does not depend on who waits first, and its lock views need PROCESS)."""
    if other.dialect.name != "postgresql":
        return
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    while not (await other.execute(query)).scalar_one():  # noqa: ASYNC110 - a server's view, no event to wait on
        await asyncio.sleep(0.01)


def _raise_code(conn: Connection, code: str) -> None:
    """Have the server fail the statement with a deadlock's or a unique violation's code."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '{code}'; END $$"))
    else:
        number = {"40P01": 1213, "40001": 1213}[code]
        conn.execute(text(f"SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = {number}"))


async def test_a_deadlock_victim_runs_again_and_commits(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    runs = 0
    holds_row_1 = asyncio.Event()

    def work(conn: Connection) -> int:
        nonlocal runs  # the test's own count; a real caller's work must not do this
        runs += 1
        conn.execute(text("UPDATE t SET n = n + 1 WHERE id = 1"))
        holds_row_1.set()
        conn.execute(text("UPDATE t SET n = n + 1 WHERE id = :id"), {"id": 2})
        return runs

    caplog.set_level(logging.INFO, logger="cryptmail.db._engine")
    async with engine.connect() as other:
        await other.execute(text("UPDATE t SET n = n + 10 WHERE id >= 2"))
        ours = asyncio.create_task(run_transaction(engine, work, retry=True))
        await holds_row_1.wait()
        await _wait_for_a_lock_wait(other)
        # Closes the cycle: ours waits for row 2, this waits for row 1. Ours is the
        # victim; this one gets row 1 when ours rolls back, and commits.
        await other.execute(text("UPDATE t SET n = n + 10 WHERE id = 1"))
        await other.commit()
        assert await ours == 2
    assert runs == 2
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, n FROM t WHERE id <= 2"))
        found = {int(row.id): int(row.n) for row in rows}
    assert found == {1: 11, 2: 11}  # ours once, the other once: the first run left nothing
    retried = [r for r in caplog.records if "running it again" in r.getMessage()]
    assert len(retried) == 1 and retried[0].levelno == logging.INFO
    code = "1213" if engine.dialect.name == "mysql" else "40P01"
    assert code in retried[0].getMessage() and "attempt 1 of 3" in retried[0].getMessage()
    assert "UPDATE" not in caplog.text


async def test_a_transaction_aborted_every_time_gives_up_after_the_last_attempt(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    runs = 0

    def work(conn: Connection) -> None:
        nonlocal runs
        runs += 1
        conn.execute(text("UPDATE t SET n = n + 1 WHERE id = 1"))
        _raise_code(conn, "40P01")

    caplog.set_level(logging.INFO, logger="cryptmail.db._engine")
    with pytest.raises(TransactionAborted) as caught:
        await run_transaction(engine, work, retry=True)
    assert runs == ATTEMPTS == 3
    assert caught.value.code in ("1213", "40P01")
    assert [r.getMessage().split("attempt ")[1] for r in caplog.records] == [
        "1 of 3; running it again",
        "2 of 3; running it again",
    ]
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT n FROM t WHERE id = 1"))).scalar_one() == 0


async def test_a_serialization_failure_runs_again(engine: AsyncEngine) -> None:
    runs = 0

    def work(conn: Connection) -> int:
        nonlocal runs
        runs += 1
        if runs == 1:
            _raise_code(conn, "40001")
        return runs

    assert await run_transaction(engine, work, retry=True) == 2


async def test_an_async_transaction_runs_again(engine: AsyncEngine) -> None:
    # COPY and MOVE's body, written against the async API, retries the same way.
    runs = 0

    async def work(conn: AsyncConnection) -> int:
        nonlocal runs
        runs += 1
        await conn.execute(text("UPDATE t SET n = n + 1 WHERE id = 1"))
        if runs == 1:
            await conn.run_sync(_raise_code, "40P01")
        return runs

    assert await run_async_transaction(engine, work, retry=True) == 2
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT n FROM t WHERE id = 1"))).scalar_one() == 1
    runs = 0
    with pytest.raises(TransactionAborted):
        await run_async_transaction(engine, work)
    assert runs == 1


async def test_without_retry_an_aborted_transaction_runs_once(engine: AsyncEngine) -> None:
    runs = 0

    def work(conn: Connection) -> None:
        nonlocal runs
        runs += 1
        _raise_code(conn, "40P01")

    with pytest.raises(TransactionAborted):
        await run_transaction(engine, work)  # retry defaults to False
    assert runs == 1


async def test_a_unique_violation_is_not_run_again(engine: AsyncEngine) -> None:
    runs = 0

    def work(conn: Connection) -> None:
        nonlocal runs
        runs += 1
        conn.execute(text("INSERT INTO t (id, n) VALUES (:id, 0)"), {"id": 1})

    with pytest.raises(DatabaseConflict) as caught:
        await run_transaction(engine, work, retry=True)
    assert runs == 1
    assert not isinstance(caught.value, DatabaseUnavailable)


async def test_a_lock_wait_timeout_is_not_run_again(engine: AsyncEngine) -> None:
    runs = 0
    timeout = (
        "SET LOCAL lock_timeout = '50ms'"
        if engine.dialect.name == "postgresql"
        else "SET SESSION innodb_lock_wait_timeout = 1"
    )

    def work(conn: Connection) -> None:
        nonlocal runs
        runs += 1
        conn.execute(text(timeout))
        conn.execute(text("UPDATE t SET n = :n WHERE id = 1"), {"n": 5})

    async with engine.connect() as other:
        await other.execute(text("UPDATE t SET n = n + 1 WHERE id = 1"))
        with pytest.raises(DatabaseUnavailable) as caught:
            await run_transaction(engine, work, retry=True)
        await other.rollback()
    assert runs == 1
    assert not isinstance(caught.value, TransactionAborted)
    assert ("1205" if engine.dialect.name == "mysql" else "55P03") in str(caught.value)
