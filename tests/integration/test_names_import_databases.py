"""Issue 16's store changes on SQLite, MariaDB and PostgreSQL: subscriptions stored in
another normal form merged into the NFC row on read (insert, then a delete by binary
lookup), and the caches older imports left cleared for the background pass (a length
filter on a binary column, then a compare-and-set to NULL), in each dialect."""

from __future__ import annotations

from pathlib import Path

import pytest

from store import test_import, test_subscriptions
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
