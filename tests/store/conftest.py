"""A store on a fresh SQLite data dir with one domain and helpers to make users."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config, load_config
from cryptmail.db import create_engine, run_transaction, upgrade
from cryptmail.errors import DatabaseUnavailable, TransactionAborted
from cryptmail.keys import create_user
from cryptmail.secret import Password
from cryptmail.store import ensure_default_mailboxes
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import User, add_domain, get_user

PASSWORD = Password.from_str("correct horse battery")


@dataclass
class StoreRig:
    config: Config
    engine: AsyncEngine
    blobs: LocalBlobStore
    data_dir: Path

    async def user(self, email: str, crypt: int = 2) -> User:
        await create_user(self.engine, email, PASSWORD, self.config.crypto, crypt=crypt)
        async with self.engine.begin() as conn:
            user = await get_user(conn, email)
            await ensure_default_mailboxes(conn, user.id)
        return user


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[StoreRig]:
    config = load_config(
        None, data_dir=str(tmp_path / "data"), **{"crypto.argon2.memory_kib": 19456}
    )
    engine = create_engine(config.database_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        await add_domain(conn, "example.org")
    yield StoreRig(config, engine, LocalBlobStore(config.blob_path), config.data_path)
    await engine.dispose()


class FirstWriteFails:
    """`run_transaction` for a store module whose first write transaction raises
    `error` and whose later ones run; `writes` counts the write transactions asked."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.writes = 0

    async def __call__(self, engine: AsyncEngine, work: Any, **kwargs: Any) -> Any:
        if kwargs.get("writes", True):
            self.writes += 1
            if self.writes == 1:
                raise self.error
        return await run_transaction(engine, work, **kwargs)


ABORTED_OR_UNAVAILABLE = pytest.mark.parametrize(
    ("error", "runs"),
    [
        (TransactionAborted("deadlock victim", code="1213"), 2),
        (DatabaseUnavailable("the database stayed busy"), 1),
    ],
    ids=["aborted-runs-again", "unavailable-goes-up"],
)
"""A deadlock victim's transaction runs again (2 runs); a database that stayed busy
or went away is the caller's error after one."""
