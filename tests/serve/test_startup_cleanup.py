"""`serve` cleans what a killed server left before any listener starts: temp files in
`blobs/tmp` (zeroed, then unlinked) and dead spools, whatever their age."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config, load_config
from cryptmail.db import create_engine, upgrade
from cryptmail.serve import Addresses, run_server
from cryptmail.serve._housekeeping import clean_at_start
from cryptmail.store import new_blob_id
from cryptmail.store.blobs import LocalBlobStore

MARKER = b"PLAINTEXT-MARKER " * 100


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return int(child.stdout)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "cryptmail.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[crypto.argon2]\nmemory_kib = 19456\ntime_cost = 2\n'
    )
    return load_config(path)


def _leftovers(config: Config, peeks: Path) -> list[Path]:
    """A killed APPEND's temp file, a killed delete's `.deleted.` file (both fresh, so
    the hourly sweep would keep them an hour) and a dead spool; each temp file
    hard-linked under `peeks` to read its disk blocks after the cleanup."""
    tmp = LocalBlobStore(config.blob_path).root / "tmp"
    dead = _dead_pid()
    peeks.mkdir()
    made = []
    for name in (f"{new_blob_id().hex()}.{dead}", f"{new_blob_id().hex()}.deleted.{dead}"):
        (tmp / name).write_bytes(MARKER)
        os.link(tmp / name, peeks / name)
        made.append(tmp / name)
    spool_dir = config.data_path / "spool"
    spool_dir.mkdir()
    (spool_dir / f"spool-{dead}-00").write_bytes(b"sealed")
    made.append(spool_dir / f"spool-{dead}-00")
    return made


async def test_clean_at_start_zeroes_and_removes_every_leftover(
    config: Config, tmp_path: Path
) -> None:
    made = _leftovers(config, tmp_path / "peeks")
    await clean_at_start(LocalBlobStore(config.blob_path), config.data_path / "spool")
    assert not any(path.exists() for path in made)
    for peek in (tmp_path / "peeks").iterdir():
        assert peek.read_bytes() == bytes(len(MARKER))


async def test_serve_cleans_before_its_listeners_start(config: Config, tmp_path: Path) -> None:
    """The listener cannot bind, so `run_server` fails at its first start: the cleanup
    has happened by then."""
    engine: AsyncEngine = create_engine(config.database_url)
    await upgrade(engine)
    made = _leftovers(config, tmp_path / "peeks")
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            with pytest.raises(OSError):
                await run_server(config, engine, Addresses(imap=f"127.0.0.1:{busy}"))
    finally:
        await engine.dispose()
    assert not any(path.exists() for path in made)
    for peek in (tmp_path / "peeks").iterdir():
        assert peek.read_bytes() == bytes(len(MARKER))
