"""The search index's rows on SQLite, MariaDB and PostgreSQL: segments written by one
session and read by another, the merge's compare-and-delete, a damaged segment dropped,
a segment as large as a merge makes (MEDIUMBLOB and max_allowed_packet on MariaDB), and
the background pass's lease (one holder, taken over when it ran out)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from store.conftest import StoreRig
from store.fulltext import test_index, test_lease

CASES: list[Callable[[StoreRig], Awaitable[None]]] = [
    test_index.test_a_second_session_sees_the_first_ones_segments,
    test_index.test_compact_merges_and_drops_expunged_blobs,
    test_index.test_a_merge_that_lost_the_race_writes_nothing,
    test_index.test_a_damaged_segment_is_dropped_never_used,
    test_index.test_a_full_size_merged_segment_is_stored_and_read_back,
    test_lease.test_one_holder_at_a_time_until_it_gives_up,
    test_lease.test_a_lease_that_ran_out_is_taken_over,
    test_lease.test_two_first_rows_leave_one_holder,
]


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__.removeprefix("test_"))
async def test_fulltext_rows(
    store_rig: StoreRig, case: Callable[[StoreRig], Awaitable[None]]
) -> None:
    await case(store_rig)
