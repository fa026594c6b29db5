"""The Sieve filing tests (tests/store/test_filing.py) on SQLite, MariaDB and PostgreSQL.

Filing a note deletes it under the holding mailbox's row lock and moves its row in the
same transaction; whether two sessions racing file each message once, and a :create
racing another, depends on each database's locking (FOR UPDATE semantics, MariaDB's
REPEATABLE READ, PostgreSQL's READ COMMITTED re-check): every test runs once per
backend, each on a fresh database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from cryptmail import store
from cryptmail.keys import unlock_account
from cryptmail.store import FilingRequest, apply_filing_notes
from store import test_filing
from store.conftest import PASSWORD, StoreRig

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


async def test_a_folder_deleted_while_filing_into_it_sends_the_message_to_inbox(
    store_rig: StoreRig,
) -> None:
    # An IMAP DELETE of the folder commits after the filing found it and before its
    # counters update: on PostgreSQL that update then found no row, and the read of the
    # counters after it raised SQLAlchemy's NoResultFound out of the login.
    user = await store_rig.user("alice@example.org")
    account, _ = await unlock_account(
        store_rig.engine, user.email, PASSWORD, store_rig.config.crypto
    )
    async with store_rig.engine.begin() as conn:
        await store.create_mailbox(conn, account, "Work")
    await store.deliver_message(
        store_rig.engine,
        store_rig.blobs,
        user,
        test_filing._source(test_filing._message()),
        filing=FilingRequest.of("Work", False, []),
    )
    async with store_rig.engine.begin() as conn:
        await store.delete_mailbox(conn, account, "Work")  # its row stays locked until commit
        filing = asyncio.ensure_future(apply_filing_notes(store_rig.engine, account))
        await asyncio.sleep(0.5)  # the filing found Work and waits for its row
    assert await filing == 1
    where = await test_filing._where(store_rig, account)
    assert "Work" not in where
    assert len(where["INBOX"]) == 1
