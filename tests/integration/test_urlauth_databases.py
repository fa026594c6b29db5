"""URLAUTH grants on SQLite, MariaDB and PostgreSQL: migration 0017's table (a binary
primary key, VARBINARY on MariaDB), grant, redeem without a key, the cap, expiry,
revocation by mailbox tag, and pruning, through the store tests of tests/store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from store import test_urlauth
from store.conftest import StoreRig

pytestmark = pytest.mark.integration

CASES: list[Callable[[StoreRig], Awaitable[None]]] = [
    test_urlauth.test_failures_are_all_none,
    test_urlauth.test_expiry_prunes,
    test_urlauth.test_limit_counts_only_live_rows,
    test_urlauth.test_revoke_all_or_one_mailbox,
]


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__.removeprefix("test_"))
async def test_url_grants(store_rig: StoreRig, case: Callable[[StoreRig], Awaitable[None]]) -> None:
    await case(store_rig)


@pytest.mark.parametrize("crypt", [2, 0], ids=["sealed", "plain"])
async def test_redeemed_without_any_key(store_rig: StoreRig, crypt: int) -> None:
    await test_urlauth.test_redeemed_without_any_key(store_rig, crypt)
