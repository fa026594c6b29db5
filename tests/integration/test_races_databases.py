"""The store race tests (tests/store/test_races.py) on SQLite, MariaDB and PostgreSQL.

Flag deltas read under the rows' lock, a second expunge of the same rows, parallel first
deliveries racing for the default folders and the per-user UIDVALIDITY counter depend
on each database's locking (FOR UPDATE, savepoints around a duplicate insert): every
test runs once per backend, each on a fresh database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from store import test_races
from store.conftest import StoreRig

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


@pytest.mark.parametrize("race", RACES, ids=lambda f: f.__name__.removeprefix("test_"))
async def test_race(store_rig: StoreRig, race: Callable[[StoreRig], Awaitable[None]]) -> None:
    await race(store_rig)
