"""The Sieve filing tests (tests/store/test_filing.py) on SQLite, MariaDB and PostgreSQL.

Filing a note deletes it under the holding mailbox's row lock and moves its row in the
same transaction; whether two sessions racing file each message once, and a :create
racing another, depends on each database's locking (FOR UPDATE semantics, MariaDB's
REPEATABLE READ, PostgreSQL's READ COMMITTED re-check): every test runs once per
backend, each on a fresh database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from store import test_filing
from store.conftest import StoreRig

pytestmark = pytest.mark.integration

CASES: list[Callable[[StoreRig], Awaitable[None]]] = [
    test_filing.test_delivery_holds_the_message_hidden_until_a_session_files_it,
    test_filing.test_missing_folders_are_made_under_create_and_kept_in_inbox_without,
    test_filing.test_a_changed_note_files_the_message_into_inbox,
    test_filing.test_sessions_racing_file_each_message_exactly_once,
    test_filing.test_a_retry_of_a_filed_delivery_is_recognised,
]


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__.removeprefix("test_"))
async def test_filing_on(store_rig: StoreRig, case: Callable[[StoreRig], Awaitable[None]]) -> None:
    await case(store_rig)
