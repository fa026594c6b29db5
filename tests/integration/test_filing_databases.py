"""The Sieve filing tests (tests/store/test_filing.py) on SQLite, MariaDB and PostgreSQL.

Filing a note deletes it under the holding mailbox's row lock and moves its row in the
same transaction; whether two sessions racing file each message once, and a :create
racing another, depends on each database's locking (FOR UPDATE semantics, MariaDB's
REPEATABLE READ, PostgreSQL's READ COMMITTED re-check): every test runs once per
backend, each on a fresh database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from cryptmail.config import load_config
from cryptmail.db import create_engine, upgrade
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import add_domain
from store import test_filing
from store.conftest import StoreRig

pytestmark = pytest.mark.integration

SERVER_FIXTURES = {"mariadb": "mariadb_database", "postgresql": "postgres_database"}
CASES: list[Callable[[StoreRig], Awaitable[None]]] = [
    test_filing.test_delivery_holds_the_message_hidden_until_a_session_files_it,
    test_filing.test_missing_folders_are_made_under_create_and_kept_in_inbox_without,
    test_filing.test_a_changed_note_files_the_message_into_inbox,
    test_filing.test_sessions_racing_file_each_message_exactly_once,
    test_filing.test_a_retry_of_a_filed_delivery_is_recognised,
]


@pytest.fixture(params=["sqlite", "mariadb", "postgresql"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreRig]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cryptmail.db'}"
    else:
        url = str(request.getfixturevalue(SERVER_FIXTURES[request.param]).url)
    config = load_config(
        None, data_dir=str(tmp_path / "data"), **{"crypto.argon2.memory_kib": 19456}
    )
    engine = create_engine(url)
    await upgrade(engine)
    async with engine.begin() as conn:
        await add_domain(conn, "example.org")
    yield StoreRig(config, engine, LocalBlobStore(config.blob_path), config.data_path)
    await engine.dispose()


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__.removeprefix("test_"))
async def test_filing_on(rig: StoreRig, case: Callable[[StoreRig], Awaitable[None]]) -> None:
    await case(rig)
