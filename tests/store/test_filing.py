"""Sieve filing notes: the note codec and sealing, delivery into the holding mailbox,
and applying notes (folders found, made under :create or not, flags, counters, races,
a tampered note)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, update

from cryptmail import store
from cryptmail.crypto import generate_private_key, public_info
from cryptmail.db import tables as t
from cryptmail.errors import DatabaseUnavailable, ObjectTampered, StoreError
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.store import FilingRequest, _filing, apply_filing_notes
from cryptmail.store._filing import open_note, seal_note
from cryptmail.store._ids import BlobId
from cryptmail.users import User

from .conftest import ABORTED_OR_UNAVAILABLE, PASSWORD, FirstWriteFails, StoreRig
from .test_mailboxes import store_as_before_normalising

MARKER = b"filing-marker-5e1c"
FOLDER = "Projects/2026 \u00fcber"


async def _source(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _message(n: int = 0) -> bytes:
    return b"Subject: filing %d\r\n\r\n" % n + MARKER + b"\r\n"


async def _account(rig: StoreRig, user: User) -> UnlockedAccount:
    account, _ = await unlock_account(rig.engine, user.email, PASSWORD, rig.config.crypto)
    return account


async def _deliver(rig: StoreRig, user: User, request: FilingRequest, n: int = 0) -> store.Appended:
    return await store.deliver_message(
        rig.engine, rig.blobs, user, _source(_message(n)), filing=request
    )


async def _where(rig: StoreRig, account: UnlockedAccount) -> dict[str, list[store.MessageRow]]:
    async with rig.engine.connect() as conn:
        boxes = await store.list_mailboxes(conn, account.user.id, account)
        return {b.name: await store.load_messages(conn, account, b.id) for b in boxes}


async def _mailbox_counters(rig: StoreRig, user: User) -> dict[str | None, tuple[int, int, int]]:
    """role (None for the user's own) -> (used_bytes, message_count, real count)."""
    mb, msg = t.cm_mailboxes, t.cm_messages
    async with rig.engine.connect() as conn:
        rows = await conn.execute(
            select(mb.c.id, mb.c.role, mb.c.used_bytes, mb.c.message_count).where(
                mb.c.user_id == user.id
            )
        )
        out: dict[str | None, tuple[int, int, int]] = {}
        for row in rows.all():
            real = (
                await conn.execute(
                    select(func.count()).select_from(msg).where(msg.c.mailbox_id == row.id)
                )
            ).scalar_one()
            out[row.role if row.role else f"#{row.id}"] = (
                int(row.used_bytes),
                int(row.message_count),
                int(real),
            )
        return out


def test_the_note_codec_round_trips_and_pads() -> None:
    request = FilingRequest.of(FOLDER, True, ["\\seen", "$Label1", "\\Recent", "\\Bogus"])
    assert request.flags == frozenset({"\\Seen", "$Label1"})
    data = request.encode()
    assert len(data) % 256 == 0
    assert FilingRequest.decode(data) == request
    short = FilingRequest("A").encode()
    assert len(short) == len(FilingRequest("Projects/longer name").encode())


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff", b"[]", b'{"v":2,"m":"A","c":false,"f":[]}', b'{"v":1,"m":1,"c":false,"f":[]}'],
)
def test_a_note_this_version_did_not_write_is_tampered(data: bytes) -> None:
    with pytest.raises(ObjectTampered):
        FilingRequest.decode(data)


def test_a_note_over_its_limit_is_refused() -> None:
    with pytest.raises(StoreError):
        FilingRequest("x" * 5000).encode()


async def test_a_sealed_note_opens_only_for_its_blob(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    account = await _account(rig, user)
    request = FilingRequest.of(FOLDER, False, ["\\Flagged"])
    blob = BlobId(os.urandom(16))
    sealed = seal_note(request, account.active_key, blob)
    assert FOLDER.encode() not in sealed
    assert open_note(account, sealed, blob) == request
    with pytest.raises(ObjectTampered):
        open_note(account, sealed, BlobId(os.urandom(16)))
    stranger = public_info(generate_private_key("x25519"))
    with pytest.raises(ObjectTampered):
        open_note(account, seal_note(request, stranger, blob), blob)


async def test_delivery_holds_the_message_hidden_until_a_session_files_it(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    account = await _account(rig, user)
    async with rig.engine.begin() as conn:
        await store.create_mailbox(conn, account, FOLDER)
    appended = await _deliver(rig, user, FilingRequest.of(FOLDER, False, ["\\Seen", "work"]))
    held = await store.holding_mailbox(rig.engine, user.id)
    assert appended.mailbox_id == held
    # Hidden: not listed, every listed folder empty; counted in the quota.
    where = await _where(rig, account)
    assert all(not rows for rows in where.values())
    assert "" not in where
    async with rig.engine.connect() as conn:
        assert await store.used_bytes(conn, user.id) == 4096
        assert await store.message_count(conn, user.id) == 1
        note = (await conn.execute(select(t.cm_filing_notes.c.note_sealed))).scalar_one()
    assert FOLDER.encode() not in bytes(note) and b"work" not in bytes(note)
    assert await store.pending_notes(rig.engine, user.id) == 1
    assert await store.filing_backlog(rig.engine) == (1, 1)

    assert await apply_filing_notes(rig.engine, account) == 1
    assert await store.filing_backlog(rig.engine) == (0, 0)
    where = await _where(rig, account)
    [row] = where[FOLDER]
    assert row.uid == 1 and row.flags == {"\\Seen", "work", store.RECENT_FLAG}
    assert sum(len(rows) for rows in where.values()) == 1
    assert await store.pending_notes(rig.engine, user.id) == 0
    counters = await _mailbox_counters(rig, user)
    assert counters["filing"] == (0, 0, 0)
    assert all(used == 4096 * real and count == real for used, count, real in counters.values())
    async with rig.engine.connect() as conn:
        assert await store.used_bytes(conn, user.id) == 4096
    # Nothing is left to do the second time.
    assert await apply_filing_notes(rig.engine, account) == 0


async def test_missing_folders_are_made_under_create_and_kept_in_inbox_without(
    rig: StoreRig,
) -> None:
    user = await rig.user("alice@example.org")
    account = await _account(rig, user)
    await _deliver(rig, user, FilingRequest.of("Made/Here", True, []), 1)
    await _deliver(rig, user, FilingRequest.of("Nowhere", False, ["\\Flagged"]), 2)
    await _deliver(rig, user, FilingRequest.of("Junk", False, ["\\Seen"]), 3)
    await _deliver(rig, user, FilingRequest.of("INBOX", False, ["$x"]), 4)
    await _deliver(rig, user, FilingRequest.of("bad*name", True, []), 5)
    assert await apply_filing_notes(rig.engine, account) == 5
    where = await _where(rig, account)
    assert [r.flags for r in where["Made/Here"]] == [frozenset()]
    assert not where["Made/Here"][0].claimed  # no flags: the first SELECT claims it
    assert [r.flags for r in where["Junk"]] == [{"\\Seen", store.RECENT_FLAG}]
    # "Nowhere" (no :create) and the invalid name: INBOX without their flags.
    assert [r.flags for r in where["INBOX"]] == [
        frozenset(),
        {"$x", store.RECENT_FLAG},
        frozenset(),
    ]
    assert "Nowhere" not in where
    assert [r.uid for r in where["INBOX"]] == [1, 2, 3]


async def test_a_changed_note_files_the_message_into_inbox(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    account = await _account(rig, user)
    await _deliver(rig, user, FilingRequest.of("Secret", True, ["\\Seen"]))
    async with rig.engine.begin() as conn:
        note = (await conn.execute(select(t.cm_filing_notes.c.note_sealed))).scalar_one()
        forged = bytes(note)[:-1] + bytes([note[-1] ^ 1])
        await conn.execute(update(t.cm_filing_notes).values(note_sealed=forged))
    assert await apply_filing_notes(rig.engine, account) == 1
    where = await _where(rig, account)
    assert [r.flags for r in where["INBOX"]] == [frozenset()]
    assert "Secret" not in where


async def test_sessions_racing_file_each_message_exactly_once(rig: StoreRig) -> None:
    users = [await rig.user(f"u{i}@example.org") for i in range(2)]
    accounts = [await _account(rig, u) for u in users]
    for user in users:
        for n in range(6):
            await _deliver(rig, user, FilingRequest.of(f"F{n % 3}", True, ["\\Seen"]), n)
    # Six logins of each user at once: one process's FilingNotes and bare appliers.
    notes = store.FilingNotes(rig.engine)
    runs = [
        notes.apply(a) if i % 2 else apply_filing_notes(rig.engine, a)
        for a in accounts
        for i in range(6)
    ]
    counts = await asyncio.gather(*runs)
    assert sum(counts) == 12
    for user, account in zip(users, accounts, strict=True):
        where = await _where(rig, account)
        assert sorted(len(where[f"F{k}"]) for k in range(3)) == [2, 2, 2]
        assert [r.uid for r in where["F0"]] == [1, 2]
        counters = await _mailbox_counters(rig, user)
        assert all(used == 4096 * real and count == real for used, count, real in counters.values())


async def test_heard_applies_only_for_the_holding_mailbox(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    account = await _account(rig, user)
    notes = store.FilingNotes(rig.engine)
    async with rig.engine.connect() as conn:
        inbox = await store.inbox_id(conn, user.id)
    assert await notes.heard(account, [inbox]) == 0  # no holding mailbox yet
    appended = await _deliver(rig, user, FilingRequest.of("A", True, []))
    assert appended.mailbox_id != inbox
    assert await notes.heard(account, [inbox]) == 0
    assert await store.pending_notes(rig.engine, user.id) == 1
    assert await notes.heard(account, [inbox, appended.mailbox_id]) == 1
    assert await store.pending_notes(rig.engine, user.id) == 0


async def test_a_retry_of_a_filed_delivery_is_recognised(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    account = await _account(rig, user)
    digest = os.urandom(32)
    request = FilingRequest.of("A", True, [])
    first = await store.deliver_message(
        rig.engine, rig.blobs, user, _source(_message()), filing=request, message_digest=digest
    )
    again = await store.deliver_message(
        rig.engine, rig.blobs, user, _source(_message()), filing=request, message_digest=digest
    )
    assert again.duplicate and again.row_id == first.row_id
    assert await apply_filing_notes(rig.engine, account) == 1
    assert len((await _where(rig, account))["A"]) == 1


async def test_of_two_folders_stored_as_two_forms_fileinto_picks_the_one_named(
    rig: StoreRig,
) -> None:
    """ "Café" made twice before names were normalised, once per normal form: fileinto
    of either form files where IMAP SELECT of that form looks, whichever row the
    database holds first (Alice's NFD row is older, Bob's newer)."""
    orders = {
        "alice@example.org": ("Cafe\u0301", "Café"),
        "bob@example.org": ("Café", "Cafe\u0301"),
    }
    for email, forms in orders.items():
        user = await rig.user(email)
        account = await _account(rig, user)
        async with rig.engine.begin() as conn:
            ids = {
                form: (await store_as_before_normalising(conn, account, form)).id for form in forms
            }
        blobs = {}
        for n, form in enumerate(forms):
            appended = await _deliver(rig, user, FilingRequest.of(form, False, []), n)
            assert appended.blob is not None
            blobs[form] = appended.blob.blob_id
        assert await apply_filing_notes(rig.engine, account) == 2
        async with rig.engine.connect() as conn:
            for form in forms:
                rows = await store.load_messages(conn, account, ids[form])
                assert [r.blob_id for r in rows] == [blobs[form]], (email, form)


@ABORTED_OR_UNAVAILABLE
async def test_making_the_holding_mailbox_runs_again_only_after_an_abort(
    rig: StoreRig, monkeypatch: pytest.MonkeyPatch, error: Exception, runs: int
) -> None:
    """As for the default folders (test_mailboxes): a delivery that files through Sieve
    answers 4xx after one wait for a busy database, not after five."""
    user = await rig.user("alice@example.org")
    failing = FirstWriteFails(error)
    monkeypatch.setattr(_filing, "run_transaction", failing)
    if runs == 1:
        with pytest.raises(DatabaseUnavailable):
            await store.holding_mailbox(rig.engine, user.id)
    else:
        assert await store.holding_mailbox(rig.engine, user.id)
    assert failing.writes == runs
