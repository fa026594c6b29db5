"""Sort entries from delivery on SQLite, MariaDB and PostgreSQL: written with the row
(one epoch per user per process, one entry per copy, also in `deliver_many`'s one
transaction), opened only for their row, user and epoch, a bad one deleted, folded
entries and old empty epochs deleted with the chunk write, gone with their message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from store import test_sortentries
from store.conftest import StoreRig

CASES: list[Callable[[StoreRig], Awaitable[None]]] = [
    test_sortentries.test_delivery_writes_an_entry_the_session_opens,
    test_sortentries.test_a_plain_copy_or_no_record_writes_no_entry,
    test_sortentries.test_a_new_epoch_after_the_lifetime_and_for_a_new_key,
    test_sortentries.test_deliver_many_writes_each_users_entry_in_the_one_transaction,
    test_sortentries.test_an_epoch_that_does_not_open_drops_its_entries,
    test_sortentries.test_the_chunk_write_deletes_folded_entries_and_old_empty_epochs,
    test_sortentries.test_entries_go_with_their_message,
]


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__.removeprefix("test_"))
async def test_sort_entry_rows(
    store_rig: StoreRig, case: Callable[[StoreRig], Awaitable[None]]
) -> None:
    await case(store_rig)


async def test_an_entry_moved_to_another_row_does_not_open(
    store_rig: StoreRig, caplog: pytest.LogCaptureFixture
) -> None:
    await test_sortentries.test_an_entry_opens_only_for_its_row_user_and_epoch(store_rig, caplog)
