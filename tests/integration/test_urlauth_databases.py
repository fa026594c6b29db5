"""URLAUTH grants on SQLite, MariaDB and PostgreSQL: migration 0017's table (a binary
primary key, VARBINARY on MariaDB), grant, redeem without a key, the cap, expiry,
revocation by mailbox tag, and pruning, through the store tests of tests/store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from cryptmail.config import load_config
from cryptmail.db import create_engine, upgrade
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import add_domain
from store import test_urlauth
from store.conftest import StoreRig

pytestmark = pytest.mark.integration

SERVER_FIXTURES = {"mariadb": "mariadb_database", "postgresql": "postgres_database"}
CASES: list[Callable[[StoreRig], Awaitable[None]]] = [
    test_urlauth.test_failures_are_all_none,
    test_urlauth.test_expiry_prunes,
    test_urlauth.test_limit_counts_only_live_rows,
    test_urlauth.test_revoke_all_or_one_mailbox,
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
async def test_url_grants(rig: StoreRig, case: Callable[[StoreRig], Awaitable[None]]) -> None:
    await case(rig)


@pytest.mark.parametrize("crypt", [2, 0], ids=["sealed", "plain"])
async def test_redeemed_without_any_key(rig: StoreRig, crypt: int) -> None:
    await test_urlauth.test_redeemed_without_any_key(rig, crypt)
