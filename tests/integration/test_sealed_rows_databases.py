"""Folder names and subscriptions bound to their rows, and the re-seal of older ones, on
SQLite, MariaDB and PostgreSQL (insert-then-seal, and the compare-and-set update on a
binary column, in each dialect)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from cryptmail.config import load_config
from cryptmail.db import create_engine, upgrade
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import add_domain
from store import test_mailboxes, test_reseal, test_subscriptions
from store.conftest import StoreRig

SERVER_FIXTURES = {"mariadb": "mariadb_database", "postgresql": "postgres_database"}
CASES: list[Callable[[StoreRig], Awaitable[None]]] = [
    test_mailboxes.test_a_name_moved_to_another_users_row_fails,
    test_mailboxes.test_old_format_names_still_open,
    test_subscriptions.test_a_subscription_moved_to_another_user_fails,
    test_subscriptions.test_old_format_subscriptions_still_open,
    test_reseal.test_old_rows_are_resealed_once_and_stay_readable,
    test_reseal.test_resealed_names_are_bound_to_their_rows,
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
async def test_sealed_rows(rig: StoreRig, case: Callable[[StoreRig], Awaitable[None]]) -> None:
    await case(rig)
