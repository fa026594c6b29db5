"""The writer turn of a SQLite file: a wait for a stuck holder ends, and a process that
gave up on one still exits."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from cryptmail import concurrency
from cryptmail.db import _writers, run_transaction
from cryptmail.errors import DatabaseUnavailable

from .conftest import Db, hold_turn


def bump(conn: Connection) -> None:
    conn.execute(text("UPDATE counter SET value = value + 1"))


def read(conn: Connection) -> int:
    return int(conn.execute(text("SELECT value FROM counter")).scalar_one())


@pytest.mark.parametrize(
    "in_place",
    [
        False,
        # No pytest-timeout here: its SIGALRM would keep the wait from using one.
        pytest.param(True, marks=pytest.mark.timeout(0)),
    ],
    ids=["in-a-thread", "in-place"],
)
async def test_a_writer_waits_for_a_stuck_turn_only_so_long(
    db: Db, monkeypatch: pytest.MonkeyPatch, in_place: bool
) -> None:
    """A process that holds the turn and never gives it back (stopped, hung) costs the
    other writers a DatabaseUnavailable after WRITER_WAIT_S, not a wait without end;
    nothing of the refused write is stored, and the next write after the holder goes
    works. In a thread through a waiter thread; in place (an LMTP worker, on the main
    thread) with SIGALRM as the deadline, and no waiter thread."""
    engine, path = db
    monkeypatch.setattr(_writers, "WRITER_WAIT_S", 0.4)
    monkeypatch.setattr(concurrency, "_in_place", in_place)
    if in_place:

        def no_thread(_fd: int) -> None:
            raise AssertionError("a waiter thread for a write on the main thread")

        monkeypatch.setattr(_writers._waiters, "lock", no_thread)
    await run_transaction(engine, bump)
    holder = hold_turn(Path(f"{path}-writers"))
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="stayed busy.*stopped or hung"):
            await asyncio.wait_for(run_transaction(engine, bump), 10)
        assert time.monotonic() - started >= 0.4
        assert await run_transaction(engine, read, writes=False) == 1
    finally:
        with holder:
            holder.kill()
    await asyncio.wait_for(run_transaction(engine, bump), 10)
    assert await run_transaction(engine, read, writes=False) == 2
    if in_place:  # the alarm is off again (else it is pytest-timeout's), and ignored
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        signal.raise_signal(signal.SIGALRM)


async def test_waits_given_up_free_their_turn_when_the_holder_goes(db: Db) -> None:
    """More writes given up than there are waiter threads: once the holder goes, each
    abandoned wait gives the turn straight back, and the next write gets it."""
    _, path = db
    queue = _writers.WriteQueue(str(path))
    holder = hold_turn(Path(f"{path}-writers"))
    try:
        for _ in range(_writers._WAITERS + 2):
            with pytest.raises(DatabaseUnavailable), queue.turn(wait_s=0.05):
                pass
    finally:
        with holder:
            holder.kill()

    def take() -> None:
        with queue.turn(wait_s=10):
            pass

    await asyncio.wait_for(asyncio.to_thread(take), 20)
    queue.close()


def test_a_process_that_gave_up_exits_while_the_holder_stays(tmp_path: Path) -> None:
    """A CLI command whose write was refused prints the error and exits, though its
    waiter thread still sits in flock behind the holder."""
    path = tmp_path / "db.sqlite"
    holder = hold_turn(Path(f"{path}-writers"))
    script = textwrap.dedent(
        f"""
        from cryptmail.db import _writers
        from cryptmail.errors import DatabaseUnavailable
        try:
            with _writers.WriteQueue({str(path)!r}).turn(wait_s=0.2):
                pass
        except DatabaseUnavailable as exc:
            print("refused:", exc)
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
    finally:
        with holder:
            holder.kill()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: the database stayed busy")
