"""The store race tests (tests/store/test_races.py) on SQLite, MariaDB and PostgreSQL.

Flag deltas read under the rows' lock, a second expunge of the same rows, parallel first
deliveries racing for the default folders and the per-user UIDVALIDITY counter depend
on each database's locking (FOR UPDATE, savepoints around a duplicate insert): every
test runs once per backend, each on a fresh database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from cryptmail.config import load_config
from cryptmail.db import create_engine, upgrade
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import add_domain
from store import test_races
from store.conftest import StoreRig

SERVER_FIXTURES = {"mariadb": "mariadb_database", "postgresql": "postgres_database"}
RACES: list[Callable[[StoreRig], Awaitable[None]]] = [
    test_races.test_flag_changes_apply_to_the_stored_flags,
    test_races.test_concurrent_flag_changes_all_land,
    test_races.test_unchangedsince_checks_the_stored_modseq,
    test_races.test_flag_change_of_an_expunged_row_reports_it_gone,
    test_races.test_second_expunge_of_the_same_rows_is_a_no_op,
    test_races.test_concurrent_expunges_of_the_same_rows_both_succeed,
    test_races.test_copy_of_an_expunged_row_copies_nothing,
    test_races.test_uidvalidity_of_a_recreated_name_always_grows,
    test_races.test_uidvalidity_starts_above_rows_made_by_other_tools,
    test_races.test_parallel_first_deliveries_to_a_user_made_by_sql,
    test_races.test_moves_and_flag_changes_do_not_deadlock,
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


@pytest.mark.parametrize("race", RACES, ids=lambda f: f.__name__.removeprefix("test_"))
async def test_race(rig: StoreRig, race: Callable[[StoreRig], Awaitable[None]]) -> None:
    await race(rig)
