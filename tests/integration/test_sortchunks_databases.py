"""Sort key chunks on SQLite, MariaDB and PostgreSQL: sealed and bound to their place,
replaced whole, another UIDVALIDITY's dropped, gone with their mailbox, and a full
chunk of incompressible keys (MEDIUMBLOB and max_allowed_packet on MariaDB)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from store import test_sortchunks
from store.conftest import StoreRig

CASES: list[Callable[[StoreRig], Awaitable[None]]] = [
    test_sortchunks.test_a_chunk_opens_only_where_it_was_sealed,
    test_sortchunks.test_chunks_are_replaced_whole_and_another_uidvalidity_is_dropped,
    test_sortchunks.test_chunks_go_with_their_mailbox,
    test_sortchunks.test_a_full_chunk_is_stored_and_read_back,
]


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__.removeprefix("test_"))
async def test_sort_chunk_rows(
    store_rig: StoreRig, case: Callable[[StoreRig], Awaitable[None]]
) -> None:
    await case(store_rig)
