"""The search index's rows on SQLite, MariaDB and PostgreSQL: segments written by one
session and read by another, the merge's compare-and-delete, a damaged segment dropped,
and a segment as large as a merge makes (MEDIUMBLOB and max_allowed_packet on MariaDB)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from cryptmail.config import load_config
from cryptmail.db import create_engine, upgrade
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import add_domain
from store.conftest import StoreRig
from store.fulltext import test_index

SERVER_FIXTURES = {"mariadb": "mariadb_database", "postgresql": "postgres_database"}
CASES: list[Callable[[StoreRig], Awaitable[None]]] = [
    test_index.test_a_second_session_sees_the_first_ones_segments,
    test_index.test_compact_merges_and_drops_expunged_blobs,
    test_index.test_a_merge_that_lost_the_race_writes_nothing,
    test_index.test_a_damaged_segment_is_dropped_never_used,
    test_index.test_a_full_size_merged_segment_is_stored_and_read_back,
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
async def test_fulltext_rows(rig: StoreRig, case: Callable[[StoreRig], Awaitable[None]]) -> None:
    await case(rig)
