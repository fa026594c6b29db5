"""The change log: rows written in the change's transaction, read with a cursor that
asks again for ids it skipped (a transaction that commits after a later one), pruned
by id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.db import (
    Change,
    ChangeCursor,
    ChangeKind,
    UserId,
    create_engine,
    newest_change,
    oldest_change,
    parse_payload,
    prune_changes,
    read_changes,
    record_user_change,
    run_transaction,
    upgrade,
)
from cryptmail.db import tables as t
from cryptmail.db._changes import GAP_S


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    await upgrade(engine)
    yield engine
    await engine.dispose()


async def _record(engine: AsyncEngine, user_id: int, kind: ChangeKind, mailbox_id: int = 0) -> None:
    def work(conn: Connection) -> None:
        record_user_change(conn, user_id, kind, mailbox_id)

    await run_transaction(engine, work)


async def test_a_cursor_reads_what_came_after_it_once(engine: AsyncEngine) -> None:
    await _record(engine, 1, ChangeKind.NEW, 5)
    cursor = ChangeCursor(await run_transaction(engine, newest_change, writes=False))
    await _record(engine, 2, ChangeKind.FLAGS, 6)
    await _record(engine, 3, ChangeKind.CREDENTIALS)
    found = await run_transaction(engine, lambda c: read_changes(c, cursor), writes=False)
    assert [(c.user_id, c.mailbox_id, c.kind) for c in found] == [
        (2, 6, ChangeKind.FLAGS),
        (3, 0, ChangeKind.CREDENTIALS),
    ]
    assert await run_transaction(engine, lambda c: read_changes(c, cursor), writes=False) == []


async def test_a_rolled_back_change_leaves_no_row(engine: AsyncEngine) -> None:
    def fails(conn: Connection) -> None:
        record_user_change(conn, 1, ChangeKind.CREDENTIALS)
        raise RuntimeError("the change itself failed")

    with pytest.raises(RuntimeError):
        await run_transaction(engine, fails)
    assert await run_transaction(engine, oldest_change, writes=False) is None


def test_an_id_committed_late_is_still_delivered_once() -> None:
    """Ids 7 and 9 seen, 8 not (its transaction is still open): 8 is a gap, accepted
    once when it shows up, and forgotten after GAP_S when it never does."""
    now = [0.0]
    cursor = ChangeCursor(6, clock=lambda: now[0])
    assert cursor.accept(7) and cursor.accept(9)
    assert cursor.gaps.keys() == {8}
    assert not cursor.accept(9)  # a duplicate (NOTIFY and a catch-up both bring it)
    assert cursor.accept(8) and not cursor.accept(8)
    assert cursor.accept(12)
    now[0] = GAP_S + 1
    cursor.expire()
    assert not cursor.gaps and not cursor.accept(10)


async def test_read_changes_asks_again_for_its_gaps(engine: AsyncEngine) -> None:
    for user in (1, 2, 3):
        await _record(engine, user, ChangeKind.NEW, 1)
    ids = [r.id for r in await _rows(engine)]
    cursor = ChangeCursor(ids[0] - 1)
    cursor.accept(ids[0])
    cursor.accept(ids[2])  # as if 2 had not committed yet when 3 was read
    found = await run_transaction(engine, lambda c: read_changes(c, cursor), writes=False)
    assert [c.id for c in found] == [ids[1]]


async def _rows(engine: AsyncEngine) -> list[Change]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(t.cm_changes).order_by(t.cm_changes.c.id))).all()
    return [Change(r.id, UserId(r.user_id), r.mailbox_id, ChangeKind(r.kind)) for r in rows]


async def test_prune_keeps_the_newest_rows_and_those_not_below(engine: AsyncEngine) -> None:
    for user in range(1, 21):
        await _record(engine, user, ChangeKind.NEW, 1)
    ids = [r.id for r in await _rows(engine)]

    deleted = await run_transaction(
        engine, lambda c: prune_changes(c, below=ids[5], keep_rows=1000)
    )
    assert deleted == 5 and [r.id for r in await _rows(engine)] == ids[5:]
    deleted = await run_transaction(engine, lambda c: prune_changes(c, below=0, keep_rows=4))
    assert deleted == 11 and [r.id for r in await _rows(engine)] == ids[-4:]
    assert await run_transaction(engine, lambda c: prune_changes(c, below=0, keep_rows=4)) == 0


def test_payloads_carry_ids_only() -> None:
    assert parse_payload("17 3 9 1") == Change(17, UserId(3), 9, ChangeKind.NEW)
    for bad in ("", "17 3 9", "17 3 9 99", "a b c d"):
        assert parse_payload(bad) is None
