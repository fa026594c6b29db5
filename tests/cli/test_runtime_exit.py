"""run_with_engine's exit: a command whose work broke off a query twice (a session
cancelled by a stop, then again at the end of its grace) still ends, with its code.

SQLAlchemy then leaves its graceful close of that connection running, and aiosqlite's
close waits for ever on the connection's ended thread once `asyncio.run` cancels it:
the process hung at exit. Run in a child process, so that a hang is a timeout here."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from db.test_leftovers import hold_writes

# Writes that wait in aiosqlite's thread for this test's lock, so both cancels find them.
_CHILD = textwrap.dedent(
    """
    import argparse, asyncio, sys
    from sqlalchemy import text
    from cryptmail.cli._runtime import run_with_engine
    from cryptmail.config import load_config

    async def work(config, engine):
        async def session():
            async with engine.connect() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))

        sessions = [asyncio.create_task(session()) for _ in range(3)]
        await asyncio.sleep(0.3)
        for task in sessions:
            task.cancel()  # the stop
        await asyncio.sleep(0.1)
        for task in sessions:
            task.cancel()  # the end of its grace: the connection is force-closed
        await asyncio.wait(sessions)
        return 7

    config = load_config(None, data_dir=sys.argv[1])
    sys.exit(run_with_engine(argparse.Namespace(), work, check_schema=False, config=config))
    """
)


def test_a_query_broken_off_twice_does_not_hang_the_exit(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir(mode=0o700)
    holder = hold_writes(tmp_path / "data" / "cryptmail.db")
    # Released well after the child's work: its thread's write then ends, and the exit
    # waits for nothing else (a hang waits for ever instead).
    threading.Timer(5.0, holder.close).start()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 7, done.stderr[-3000:]
    assert "did not end" not in done.stderr
