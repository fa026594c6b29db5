"""Folder names and subscriptions bound to their rows, and the re-seal of older ones, on
SQLite, MariaDB and PostgreSQL (insert-then-seal, and the compare-and-set update on a
binary column, in each dialect)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from store import test_mailboxes, test_reseal, test_subscriptions
from store.conftest import StoreRig

CASES: list[Callable[[StoreRig], Awaitable[None]]] = [
    test_mailboxes.test_a_name_moved_to_another_users_row_fails,
    test_mailboxes.test_old_format_names_still_open,
    test_subscriptions.test_a_subscription_moved_to_another_user_fails,
    test_subscriptions.test_old_format_subscriptions_still_open,
    test_reseal.test_old_rows_are_resealed_once_and_stay_readable,
    test_reseal.test_resealed_names_are_bound_to_their_rows,
]


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__.removeprefix("test_"))
async def test_sealed_rows(
    store_rig: StoreRig, case: Callable[[StoreRig], Awaitable[None]]
) -> None:
    await case(store_rig)
