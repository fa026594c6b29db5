"""Issue 16's store changes on SQLite, MariaDB and PostgreSQL: subscriptions stored in
another normal form merged into the NFC row on read (insert, then a delete by binary
lookup), and the caches older imports left cleared for the background pass (a length
filter on a binary column, then a compare-and-set to NULL), in each dialect. Names
stored in two forms before normalising: a rename finds the children by NFC, a lookup
picks among the rows its forms found by binary lookup; and a live server whose RENAME
moves the subscriptions (savepoint inserts and deletes in the rename's transaction)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imap.server.commands import test_names_nfc
from imap.server_rig import ImapRig, start_rig
from store import test_import, test_mailboxes, test_subscriptions
from store.conftest import StoreRig

pytestmark = pytest.mark.integration


async def test_subscriptions_in_other_forms_merge(store_rig: StoreRig) -> None:
    await test_subscriptions.test_names_in_other_normal_forms_are_merged_into_nfc_on_read(store_rig)


async def test_bare_import_caches_are_dropped(store_rig: StoreRig, tmp_path: Path) -> None:
    await test_import.test_drop_bare_caches_clears_only_caches_without_the_analysis(
        store_rig, tmp_path
    )


async def test_imported_rows_have_first_flags_and_no_cache(
    store_rig: StoreRig, tmp_path: Path
) -> None:
    await test_import.test_imported_rows_are_left_to_the_pass_with_their_first_flags(
        store_rig, tmp_path
    )


async def test_rename_of_a_parent_stored_in_nfd_moves_its_children(store_rig: StoreRig) -> None:
    await test_mailboxes.test_renaming_a_parent_stored_in_nfd_moves_its_children_made_in_nfc(
        store_rig
    )


async def test_two_forms_each_found_by_their_own(store_rig: StoreRig) -> None:
    await test_mailboxes.test_two_folders_stored_in_two_forms_are_each_found_by_their_own_form(
        store_rig
    )


@pytest.fixture
def imap_rig(database_url: str, tmp_path: Path) -> Iterator[ImapRig]:
    overrides = {"database.url": database_url, "imap.max_connections_per_ip": 8}
    yield from start_rig(tmp_path, **overrides)


def test_rename_carries_subscriptions(imap_rig: ImapRig) -> None:
    test_names_nfc.test_rename_carries_the_subscription_in_any_form_for_every_session(imap_rig)
