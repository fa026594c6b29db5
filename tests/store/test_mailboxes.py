"""Mailboxes: the six defaults with roles, user folders with sealed names."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptmail import store
from cryptmail.crypto import FieldCipher, context
from cryptmail.db import tables as t
from cryptmail.errors import (
    DatabaseUnavailable,
    MailboxExists,
    MailboxNotFound,
    ObjectTampered,
    StoreError,
)
from cryptmail.keys import UnlockedAccount, create_user, unlock_account
from cryptmail.store import _mailboxes
from cryptmail.users import get_user

from .conftest import ABORTED_OR_UNAVAILABLE, PASSWORD, FirstWriteFails, StoreRig
from .sealed_rows import legacy_seal, swap

SECRET_NAME = "Projekt-Geheim-4a71"


async def _account(rig: StoreRig, email: str = "alice@example.org") -> UnlockedAccount:
    await rig.user(email)
    account, _ = await unlock_account(rig.engine, email, PASSWORD, rig.config.crypto)
    return account


async def _names(rig: StoreRig, account: UnlockedAccount) -> list[str]:
    async with rig.engine.connect() as conn:
        return [b.name for b in await store.list_mailboxes(conn, account.user.id, account)]


async def test_default_six_with_roles(rig: StoreRig) -> None:
    account = await _account(rig)
    async with rig.engine.begin() as conn:
        await store.ensure_default_mailboxes(conn, account.user.id)  # idempotent
        boxes = await store.list_mailboxes(conn, account.user.id, None)
    assert [b.name for b in boxes] == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    uses = {b.name: b.special_use for b in boxes}
    assert uses == {
        "INBOX": "",
        "Archive": "\\Archive",
        "Drafts": "\\Drafts",
        "Junk": "\\Junk",
        "Sent": "\\Sent",
        "Trash": "\\Trash",
    }
    async with rig.engine.connect() as conn:
        inbox = await store.get_mailbox(conn, account, "inbox")
        assert inbox.role == "inbox"
        assert inbox.id == await store.inbox_id(conn, account.user.id)


async def test_create_rename_with_children_delete(rig: StoreRig) -> None:
    account = await _account(rig)
    async with rig.engine.begin() as conn:
        for name in ("Work", "Work/2025", "Work/2025/Q1", "Workshop"):
            await store.create_mailbox(conn, account, name)
        renamed = await store.rename_mailbox(conn, account, "Work", "Job")
    # Old and new names of every folder renamed, for the caller to move subscriptions.
    assert sorted(renamed) == [
        ("Work", "Job"),
        ("Work/2025", "Job/2025"),
        ("Work/2025/Q1", "Job/2025/Q1"),
    ]
    names = await _names(rig, account)
    assert {"Job", "Job/2025", "Job/2025/Q1", "Workshop"} <= set(names)
    assert not any(n == "Work" or n.startswith("Work/") for n in names)
    async with rig.engine.begin() as conn:
        await store.delete_mailbox(conn, account, "Job/2025/Q1")
        with pytest.raises(MailboxNotFound):
            await store.get_mailbox(conn, account, "Job/2025/Q1")
        with pytest.raises(StoreError):
            await store.delete_mailbox(conn, account, "Trash")
        with pytest.raises(StoreError):
            await store.rename_mailbox(conn, account, "Sent", "Other")
        with pytest.raises(MailboxExists):
            await store.rename_mailbox(conn, account, "Workshop", "Job")
        with pytest.raises(MailboxExists):
            await store.create_mailbox(conn, account, "Drafts")


@pytest.mark.parametrize("bad", ["", "a//b", "/a", "a/", "x*", "y%", "z\r\n", "n\x00"])
async def test_bad_names_are_refused(rig: StoreRig, bad: str) -> None:
    account = await _account(rig)
    async with rig.engine.begin() as conn:
        with pytest.raises(StoreError):
            await store.create_mailbox(conn, account, bad)


async def test_names_are_sealed_in_the_database(rig: StoreRig) -> None:
    account = await _account(rig)
    async with rig.engine.begin() as conn:
        await store.create_mailbox(conn, account, SECRET_NAME)
        await store.create_mailbox(conn, account, SECRET_NAME + "/Kind")
        await store.rename_mailbox(conn, account, SECRET_NAME + "/Kind", "Zweiter-Name-0b9e")
    await rig.engine.dispose()  # flush the WAL into the file
    raw = b"".join(p.read_bytes() for p in rig.data_dir.glob("cryptmail.db*"))
    for name in (SECRET_NAME, "Zweiter-Name-0b9e", "Kind"):
        assert name.encode() not in raw
        assert name.encode("utf-16-le") not in raw
    assert set(await _names(rig, account)) >= {SECRET_NAME, "Zweiter-Name-0b9e"}


async def test_uniqueness_by_keyed_lookup(rig: StoreRig) -> None:
    alice = await _account(rig)
    bob = await _account(rig, "bob@example.org")
    async with rig.engine.begin() as conn:
        await store.create_mailbox(conn, alice, "Shared-Name")
        with pytest.raises(MailboxExists):
            await store.create_mailbox(conn, alice, "Shared-Name")
        # Another user may use the same name: the lookup is keyed per user.
        await store.create_mailbox(conn, bob, "Shared-Name")
        found = await store.get_mailbox(conn, alice, "Shared-Name")
        assert found.name == "Shared-Name"
        with pytest.raises(MailboxNotFound):
            await store.get_mailbox(conn, alice, "shared-name")
    # Without the account the name is not known.
    async with rig.engine.connect() as conn:
        box = await store.mailbox_by_id(conn, None, found.id)
    assert box.name == f"#{found.id}"


async def test_uidvalidity_changes_on_rename(rig: StoreRig) -> None:
    account = await _account(rig)
    async with rig.engine.begin() as conn:
        parent = await store.create_mailbox(conn, account, "Old")
        child = await store.create_mailbox(conn, account, "Old/Child")
        await store.rename_mailbox(conn, account, "Old", "New")
        renamed = await store.get_mailbox(conn, account, "New")
        renamed_child = await store.get_mailbox(conn, account, "New/Child")
    assert renamed.id == parent.id
    assert renamed.uidvalidity != parent.uidvalidity
    assert renamed_child.id == child.id
    assert renamed_child.uidvalidity != child.uidvalidity


# --- names bound to their rows (issue 14, finding 6) --------------------------------


async def _two_folders(rig: StoreRig) -> tuple[UnlockedAccount, store.Mailbox, store.Mailbox]:
    account = await _account(rig)
    async with rig.engine.begin() as conn:
        first = await store.create_mailbox(conn, account, "Payroll")
        second = await store.create_mailbox(conn, account, "Newsletters")
        await store.create_mailbox(conn, account, "Untouched")
    return account, first, second


@pytest.mark.parametrize("column", ["name_sealed", "name_lookup"])
async def test_swapped_names_are_detected(
    rig: StoreRig, column: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer swaps two folders' sealed names (or their lookups): neither folder is
    shown under the other's name; the listing leaves both out and logs it, and using
    either by name or id is a clear error."""
    account, first, second = await _two_folders(rig)
    await swap(rig.engine, t.cm_mailboxes, column, "id", first.id, second.id)
    names = await _names(rig, account)
    assert "Untouched" in names and "INBOX" in names
    assert "Payroll" not in names and "Newsletters" not in names
    assert f"mailbox id {first.id}" in caplog.text and f"mailbox id {second.id}" in caplog.text
    async with rig.engine.connect() as conn:
        for name in ("Payroll", "Newsletters"):
            with pytest.raises(ObjectTampered, match="failed authentication"):
                await store.get_mailbox(conn, account, name)
        with pytest.raises(ObjectTampered, match=f"mailbox id {first.id}"):
            await store.mailbox_by_id(conn, account, first.id)


async def test_a_name_moved_to_another_users_row_fails(rig: StoreRig) -> None:
    alice = await _account(rig)
    bob = await _account(rig, "bob@example.org")
    async with rig.engine.begin() as conn:
        mine = await store.create_mailbox(conn, alice, "Same")
        theirs = await store.create_mailbox(conn, bob, "Same")
    await swap(rig.engine, t.cm_mailboxes, "name_sealed", "id", mine.id, theirs.id)
    assert "Same" not in await _names(rig, alice)
    assert "Same" not in await _names(rig, bob)


async def test_new_names_are_version_3_bound_to_the_row(rig: StoreRig) -> None:
    account, first, _second = await _two_folders(rig)
    async with rig.engine.begin() as conn:
        await store.rename_mailbox(conn, account, "Payroll", "Salaries")
        sealed = (
            await conn.execute(
                select(t.cm_mailboxes.c.name_sealed).where(t.cm_mailboxes.c.id == first.id)
            )
        ).scalar_one()
    assert FieldCipher.is_current(bytes(sealed))
    assert account.fields.open(bytes(sealed), context("cm_mailboxes.name_sealed", first.id)) == (
        b"Salaries"
    )


async def test_old_format_names_still_open(rig: StoreRig) -> None:
    account, first, second = await _two_folders(rig)
    legacy = b"mailbox-name|%d" % account.user.id
    async with rig.engine.begin() as conn:
        for box in (first, second):
            await conn.execute(
                update(t.cm_mailboxes)
                .where(t.cm_mailboxes.c.id == box.id)
                .values(name_sealed=legacy_seal(account, box.name.encode(), legacy))
            )
    assert {"Payroll", "Newsletters"} <= set(await _names(rig, account))
    async with rig.engine.connect() as conn:
        assert (await store.get_mailbox(conn, account, "Payroll")).id == first.id
    # Old names are bound to the user only, but the lookup check still catches a swap
    # of the sealed names alone.
    await swap(rig.engine, t.cm_mailboxes, "name_sealed", "id", first.id, second.id)
    assert not {"Payroll", "Newsletters"} & set(await _names(rig, account))


async def test_names_are_stored_in_nfc_and_found_in_any_normal_form(rig: StoreRig) -> None:
    """RFC 9051 5.1: a denormalised name is stored in NFC; either form finds it, and the
    other form of an existing name is no new name (sealed names: compared by lookup)."""
    alice = await _account(rig)
    nfc, nfd = "Entwürfe/Köln", "Entwu\u0308rfe/Ko\u0308ln"
    async with rig.engine.begin() as conn:
        await store.create_mailbox(conn, alice, "Entwürfe")
        box = await store.create_mailbox(conn, alice, nfd)
        assert box.name == nfc
        for name in (nfc, nfd):
            assert (await store.get_mailbox(conn, alice, name)).id == box.id
            with pytest.raises(MailboxExists):
                await store.create_mailbox(conn, alice, name)
        await store.rename_mailbox(conn, alice, nfd, "Ablage/Mu\u0308nchen")
        assert (await store.get_mailbox(conn, alice, "Ablage/München")).id == box.id


async def test_a_name_stored_before_normalising_is_still_found_and_unique(
    rig: StoreRig,
) -> None:
    """A folder created in NFD before names were normalised keeps its row: NFC and NFD
    both find it, creating either form is refused, renaming it stores NFC."""
    alice = await _account(rig)
    nfd = "Gru\u0308n"
    async with rig.engine.begin() as conn:
        box = await store.create_mailbox(conn, alice, "Placeholder")
        lookup = alice.fields.lookup(nfd.encode(), b"mailbox-name|%d" % alice.user.id)
        sealed = alice.fields.seal(nfd.encode(), context("cm_mailboxes.name_sealed", box.id))
        await conn.execute(
            update(t.cm_mailboxes)
            .where(t.cm_mailboxes.c.id == box.id)
            .values(name_lookup=lookup, name_sealed=sealed)
        )
    assert nfd in await _names(rig, alice)
    async with rig.engine.begin() as conn:
        for name in ("Grün", nfd):
            assert (await store.get_mailbox(conn, alice, name)).id == box.id
            with pytest.raises(MailboxExists):
                await store.create_mailbox(conn, alice, name)
        renamed = await store.rename_mailbox(conn, alice, "Grün", "Grün/Alt")
        assert renamed == [(nfd, "Grün/Alt")]  # the old name as it was stored
    assert "Grün/Alt" in await _names(rig, alice)


async def store_as_before_normalising(
    conn: AsyncConnection, account: UnlockedAccount, name: str
) -> store.Mailbox:
    """A folder whose name is stored as given (here NFD), as before names were
    normalised: the row made under a placeholder, then its name and lookup replaced."""
    box = await store.create_mailbox(conn, account, "Placeholder")
    lookup = account.fields.lookup(name.encode(), b"mailbox-name|%d" % account.user.id)
    sealed = account.fields.seal(name.encode(), context("cm_mailboxes.name_sealed", box.id))
    await conn.execute(
        update(t.cm_mailboxes)
        .where(t.cm_mailboxes.c.id == box.id)
        .values(name_lookup=lookup, name_sealed=sealed)
    )
    return box


async def test_renaming_a_parent_stored_in_nfd_moves_its_children_made_in_nfc(
    rig: StoreRig,
) -> None:
    """A parent stored in NFD before names were normalised, a child created under it
    since (stored NFC, "Café/Thé"): RENAME of the parent, in either form, moves the
    child too, instead of leaving it behind under a parent that is gone."""
    alice = await _account(rig)
    async with rig.engine.begin() as conn:
        parent = await store_as_before_normalising(conn, alice, "Cafe\u0301")
        child = await store.create_mailbox(conn, alice, "Café/Thé")
        deeper = await store.create_mailbox(conn, alice, "Cafe\u0301/The\u0301/Noir")
        renamed = await store.rename_mailbox(conn, alice, "Café", "Tea")
        assert sorted(renamed) == [
            ("Cafe\u0301", "Tea"),
            ("Café/Thé", "Tea/Thé"),
            ("Café/Thé/Noir", "Tea/Thé/Noir"),
        ]
        for box, name in ((parent, "Tea"), (child, "Tea/Thé"), (deeper, "Tea/Thé/Noir")):
            assert (await store.get_mailbox(conn, alice, name)).id == box.id
    assert not [n for n in await _names(rig, alice) if n.startswith("Caf")]


async def test_two_folders_stored_in_two_forms_are_each_found_by_their_own_form(
    rig: StoreRig,
) -> None:
    """ "Café" made twice before names were normalised, once per form: two folders. Each
    is found (get_mailbox, find_mailbox) by the form it is stored in, whichever row the
    database holds first (Alice's NFD row is older, Bob's newer); renaming one leaves
    the other where it is."""
    orders = {
        "alice@example.org": ("Cafe\u0301", "Café"),
        "bob@example.org": ("Café", "Cafe\u0301"),
    }
    for email, forms in orders.items():
        account = await _account(rig, email)
        async with rig.engine.begin() as conn:
            ids = {
                form: (await store_as_before_normalising(conn, account, form)).id for form in forms
            }
        assert len(set(ids.values())) == 2
        for form, box_id in ids.items():
            async with rig.engine.connect() as conn:
                assert (await store.get_mailbox(conn, account, form)).id == box_id, (email, form)
            assert (await store.find_mailbox(rig.engine, account, form)).id == box_id
        async with rig.engine.begin() as conn:
            renamed = await store.rename_mailbox(conn, account, "Cafe\u0301", "Old café")
            assert renamed == [("Cafe\u0301", "Old café")]
            assert (await store.get_mailbox(conn, account, "Café")).id == ids["Café"]
            assert (await store.get_mailbox(conn, account, "Old café")).id == ids["Cafe\u0301"]


@ABORTED_OR_UNAVAILABLE
async def test_making_the_default_folders_runs_again_only_after_an_abort(
    rig: StoreRig, monkeypatch: pytest.MonkeyPatch, error: Exception, runs: int
) -> None:
    """A deadlock victim (parallel first deliveries on MariaDB) makes the folders again
    at once; a database that stayed busy or went away is the caller's 4xx after one
    wait, not after five (each a writer's wait of 30 s, or a lock wait of 50)."""
    await create_user(rig.engine, "bob@example.org", PASSWORD, rig.config.crypto, crypt=2)
    async with rig.engine.connect() as conn:
        user = await get_user(conn, "bob@example.org")
    failing = FirstWriteFails(error)
    monkeypatch.setattr(_mailboxes, "run_transaction", failing)
    if runs == 1:
        with pytest.raises(DatabaseUnavailable):
            await store.create_default_mailboxes(rig.engine, user.id)
    else:
        assert await store.create_default_mailboxes(rig.engine, user.id)
    assert failing.writes == runs
