"""What the tests of run_transaction and the writer turn share: a SQLite file with a
counter, and another process holding the writer turn."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.db import create_engine

Db = tuple[AsyncEngine, Path]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Db]:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER)"))
        await conn.execute(text("INSERT INTO counter VALUES (1, 0)"))
    yield engine, tmp_path / "db.sqlite"
    await engine.dispose()


def hold_turn(writers: Path) -> subprocess.Popen[bytes]:
    """Another process (an LMTP worker of serve) taking its turn as a writer, until it
    reads a line."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"fd = os.open({str(writers)!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "sys.stdin.readline()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == b"held\n"
    return holder
