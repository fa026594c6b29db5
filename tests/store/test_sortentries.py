"""Sort entries from delivery on a real database: written with the message row in one
transaction (a failed transaction leaves neither, and no held epoch key), one epoch
per user per process, opened by the user's session only for the row and blob they
were sealed for, a bad one deleted, folded entries and old empty epochs deleted with
the chunk write, gone with their message; no plaintext of a header at rest."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text, update

from cryptmail.db import tables as t
from cryptmail.db import utcnow
from cryptmail.errors import DatabaseError
from cryptmail.keys import UnlockedAccount, server_key, unlock_account
from cryptmail.store import (
    DeliveryEpochs,
    DeliveryJob,
    MessageId,
    MessageRow,
    SortFields,
    TakenEntries,
    deliver_many,
    deliver_message,
    header_sort_fields,
    inbox_id,
    load_rows,
    save_sort_chunks,
    sort_entry_count,
    take_sort_entries,
)
from cryptmail.store._append import resolve_target
from cryptmail.store._ids import BlobId
from cryptmail.store._sortentries import (
    RECORD_ENTRY,
    _entry_context,
    _entry_contexts,
    decode_entry,
    encode_entry,
)
from cryptmail.store.sortkeys import SortKeys, sort_keys
from cryptmail.users import User

from .conftest import PASSWORD, StoreRig

_ENTRY_HEAD = 13  # u8 version, u64 size, u32 length
_WORD = b"Zanzibarquix"
HEADER = (
    b"From: " + _WORD + b" Sender <s@example.net>\r\nTo: alice@example.org\r\n"
    b"Subject: Re: " + _WORD + b" plans\r\nDate: Mon, 7 Dec 2026 06:00:00 +0000\r\n"
    b"Message-ID: <a1@example.net>\r\n\r\n"
)
MESSAGE = HEADER + b"Body " + _WORD + b"\r\n"


async def _source(data: bytes = MESSAGE) -> AsyncIterator[bytes]:
    yield data


async def _account(rig: StoreRig, user: User) -> UnlockedAccount:
    account, _ = await unlock_account(rig.engine, user.email, PASSWORD, rig.config.crypto)
    return account


async def _rows(rig: StoreRig, account: UnlockedAccount, *done: object) -> list[MessageRow]:
    """The listed rows of delivered messages (``deliver_message``'s results)."""
    ids = [MessageId(d.row_id) for d in done]  # type: ignore[attr-defined]
    async with rig.engine.connect() as conn:
        return await load_rows(conn, account, ids)


def _whole(taken: TakenEntries) -> dict[int, SortKeys]:
    """{uid: whole keys} of every entry taken, whichever version."""
    return dict(taken.ready.keys() + taken.made)


async def _count(rig: StoreRig, table: object) -> int:
    async with rig.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


def test_entry_codec_pads_to_a_power_of_two() -> None:
    record = header_sort_fields(HEADER)
    plain = encode_entry(1234, record, RECORD_ENTRY)
    assert len(plain) == 256
    assert decode_entry(plain) == (RECORD_ENTRY, 1234, record)
    assert len(encode_entry(1, b"x" * 300)) == 512
    with pytest.raises(ValueError, match="padding"):
        decode_entry(plain[:-1] + b"\x01")
    with pytest.raises(ValueError, match="version"):
        decode_entry(b"\x03" + plain[1:])
    with pytest.raises(ValueError, match="version"):
        decode_entry(b"\x00" + plain[1:])
    with pytest.raises(ValueError, match="truncated"):
        decode_entry(plain[:5])


def test_the_contexts_made_in_bulk_are_each_entrys_own() -> None:
    """Heads shared per epoch; each context still binds user, epoch, row and blob."""
    blobs = {MessageId(7): BlobId(b"\x01" * 16), MessageId(123456789): BlobId(b"b" * 32),
             MessageId(8): BlobId(b"")}  # fmt: skip
    found = [(MessageId(7), 5, b""), (MessageId(123456789), 5, b""), (MessageId(8), 2**61, b""),
             (MessageId(7), 2**61, b"")]  # fmt: skip
    made = _entry_contexts(42, found, blobs)
    assert made == [_entry_context(42, epoch, row, blobs[row]) for row, epoch, _ in found]
    assert len(set(made)) == len(made)


async def test_delivery_writes_an_entry_the_session_opens(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    epochs = DeliveryEpochs()
    fields = SortFields(epochs, header_sort_fields(HEADER))
    first = await deliver_message(rig.engine, rig.blobs, user, _source(), sort_fields=fields)
    second = await deliver_message(rig.engine, rig.blobs, user, _source(), sort_fields=fields)
    assert await sort_entry_count(rig.engine, user.id) == (2, 1)  # one epoch for both
    assert len(epochs) == 1
    assert first.blob is not None and second.blob is not None
    account = await _account(rig, user)
    rows = await _rows(rig, account, first, second)
    taken = await take_sort_entries(rig.engine, account, rows)
    keys = sort_keys(fields.record)._replace(size=len(MESSAGE))
    assert taken.made == []  # version 2: the keys ready
    assert taken.ready.uids == [1, 2]
    assert _whole(taken) == {
        row.uid: keys._replace(arrival=row.internal_date.timestamp()) for row in rows
    }
    # Nothing of the header at rest: not in the rows, not in the database file.
    async with rig.engine.connect() as conn:
        sealed = [bytes(r[0]) for r in await conn.execute(select(t.cm_sort_entries.c.sealed))]
        wrapped = [bytes(r[0]) for r in await conn.execute(select(t.cm_sort_epochs.c.wrapped))]
    assert all(_WORD not in value and b"example.net" not in value for value in sealed)
    assert all(len(value) == len(sealed[0]) for value in sealed)  # padded alike
    assert all(_WORD not in value for value in wrapped)
    for path in rig.data_dir.rglob("*"):
        if path.is_file():
            assert _WORD not in path.read_bytes(), path


async def test_a_plain_copy_or_no_record_writes_no_entry(rig: StoreRig) -> None:
    plain = await rig.user("plain@example.org", crypt=0)
    sealed = await rig.user("alice@example.org")
    fields = SortFields(DeliveryEpochs(), header_sort_fields(HEADER))
    await deliver_message(rig.engine, rig.blobs, plain, _source(), sort_fields=fields)
    await deliver_message(rig.engine, rig.blobs, sealed, _source())
    assert await _count(rig, t.cm_sort_entries) == 0
    assert await _count(rig, t.cm_sort_epochs) == 0


async def test_a_new_epoch_after_the_lifetime_and_for_a_new_key(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    fields = SortFields(DeliveryEpochs(lifetime=0.0), header_sort_fields(HEADER))
    for _ in range(3):
        await deliver_message(rig.engine, rig.blobs, user, _source(), sort_fields=fields)
    assert await sort_entry_count(rig.engine, user.id) == (3, 3)


async def test_the_held_epochs_are_bounded_by_users(rig: StoreRig) -> None:
    epochs = DeliveryEpochs(users=2)
    fields = SortFields(epochs, header_sort_fields(HEADER))
    for name in ("a", "b", "c"):
        user = await rig.user(f"{name}@example.org")
        await deliver_message(rig.engine, rig.blobs, user, _source(), sort_fields=fields)
    assert len(epochs) == 2


async def test_deliver_many_writes_each_users_entry_in_the_one_transaction(
    rig: StoreRig,
) -> None:
    users = [await rig.user(f"u{i}@example.org") for i in range(3)]
    fields = SortFields(DeliveryEpochs(), header_sort_fields(HEADER))
    targets = [await resolve_target(rig.engine, user.id) for user in users]
    results = await deliver_many(
        rig.engine,
        rig.blobs,
        [DeliveryJob(target, _source(), None, fields) for target in targets],
    )
    for user, result in zip(users, results, strict=True):
        assert not isinstance(result, Exception)
        assert await sort_entry_count(rig.engine, user.id) == (1, 1)
        assert result.blob is not None
        account = await _account(rig, user)
        rows = await _rows(rig, account, result)
        taken = await take_sort_entries(rig.engine, account, rows)
        keys = sort_keys(fields.record)._replace(size=len(MESSAGE))
        arrival = rows[0].internal_date.timestamp()
        assert _whole(taken) == {rows[0].uid: keys._replace(arrival=arrival)}


async def test_a_failed_transaction_leaves_no_entry_no_epoch_and_no_held_key(
    rig: StoreRig,
) -> None:
    user = await rig.user("alice@example.org")
    epochs = DeliveryEpochs()
    fields = SortFields(epochs, header_sort_fields(HEADER))
    async with rig.engine.begin() as conn:  # the entry's insert fails after the epoch's
        await conn.execute(
            text(
                "CREATE TRIGGER no_entries BEFORE INSERT ON cm_sort_entries "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        )
    with pytest.raises(DatabaseError):
        await deliver_message(rig.engine, rig.blobs, user, _source(), sort_fields=fields)
    assert await _count(rig, t.cm_messages) == 0
    assert await _count(rig, t.cm_sort_epochs) == 0
    assert len(epochs) == 0  # rolled back: never used again
    async with rig.engine.begin() as conn:
        await conn.execute(text("DROP TRIGGER no_entries"))
    await deliver_message(rig.engine, rig.blobs, user, _source(), sort_fields=fields)
    assert await sort_entry_count(rig.engine, user.id) == (1, 1)
    assert len(epochs) == 1


async def test_an_entry_opens_only_for_its_row_user_and_epoch(
    rig: StoreRig, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await rig.user("alice@example.org")
    bob = await rig.user("bob@example.org")
    epochs = DeliveryEpochs()
    one = SortFields(epochs, header_sort_fields(HEADER))
    two = SortFields(epochs, header_sort_fields(HEADER.replace(b"plans", b"other")))
    a1 = await deliver_message(rig.engine, rig.blobs, alice, _source(), sort_fields=one)
    a2 = await deliver_message(rig.engine, rig.blobs, alice, _source(), sort_fields=two)
    b1 = await deliver_message(rig.engine, rig.blobs, bob, _source(), sort_fields=one)
    assert a1.blob and a2.blob and b1.blob
    e = t.cm_sort_entries
    async with rig.engine.begin() as conn:  # a database writer swaps alice's two entries
        rows = dict(
            (int(r[0]), bytes(r[1])) for r in await conn.execute(select(e.c.message_id, e.c.sealed))
        )
        await conn.execute(
            update(e).where(e.c.message_id == a1.row_id).values(sealed=rows[a2.row_id])
        )
        await conn.execute(
            update(e).where(e.c.message_id == a2.row_id).values(sealed=rows[a1.row_id])
        )
    alice_account = await _account(rig, alice)
    asked = await _rows(rig, alice_account, a1, a2)
    assert not (await take_sort_entries(rig.engine, alice_account, asked)).uids()
    assert "did not open" in caplog.text and str(a1.row_id) in caplog.text
    assert await sort_entry_count(rig.engine, alice.id) == (0, 1)  # the bad ones deleted
    # Bob's entry asked for by alice (her key cannot open bob's epoch): not opened.
    bob_account = await _account(rig, bob)
    bobs = await _rows(rig, bob_account, b1)
    assert not (await take_sort_entries(rig.engine, alice_account, bobs)).uids()
    # Alice's attempt deleted it: it is done the slow way, never wrongly.
    assert not (await take_sort_entries(rig.engine, bob_account, bobs)).uids()


async def test_an_epoch_that_does_not_open_drops_its_entries(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    fields = SortFields(DeliveryEpochs(), header_sort_fields(HEADER))
    done = await deliver_message(rig.engine, rig.blobs, user, _source(), sort_fields=fields)
    assert done.blob is not None
    async with rig.engine.begin() as conn:  # as after a key change: another key's wrap
        await conn.execute(update(t.cm_sort_epochs).values(key_id=b"\x00" * 32))
    account = await _account(rig, user)
    rows = await _rows(rig, account, done)
    assert not (await take_sort_entries(rig.engine, account, rows)).uids()
    assert await sort_entry_count(rig.engine, user.id) == (0, 1)


async def test_a_version_1_entry_gives_the_keys_its_record_makes(rig: StoreRig) -> None:
    """An entry written before keys were made at delivery holds the record: its keys are
    made on reading, the same keys a version 2 entry holds ready."""
    user = await rig.user("alice@example.org")
    epochs = DeliveryEpochs()
    fields = SortFields(epochs, header_sort_fields(HEADER))
    done = await deliver_message(rig.engine, rig.blobs, user, _source(), sort_fields=fields)
    assert done.blob is not None
    epoch = next(iter(epochs._held.values()))
    old = epoch.cipher.seal(
        encode_entry(len(MESSAGE), fields.record, RECORD_ENTRY),
        _entry_context(user.id, epoch.id, done.row_id, done.blob.blob_id),
    )
    async with rig.engine.begin() as conn:
        await conn.execute(update(t.cm_sort_entries).values(sealed=old))
    account = await _account(rig, user)
    rows = await _rows(rig, account, done)
    taken = await take_sort_entries(rig.engine, account, rows)
    assert len(taken.ready) == 0
    arrival = rows[0].internal_date.timestamp()
    expected = sort_keys(fields.record)._replace(size=len(MESSAGE), arrival=arrival)
    assert taken.made == [(rows[0].uid, expected)]


@pytest.mark.parametrize("by_mailbox", [1, 10_000], ids=["mailbox-query", "id-queries"])
async def test_only_the_rows_asked_for_are_taken_either_way(
    rig: StoreRig, monkeypatch: pytest.MonkeyPatch, by_mailbox: int
) -> None:
    """Many rows asked for read the mailbox's entries in one query, few by id: either
    way only the asked rows' entries are taken, and another mailbox's never."""
    monkeypatch.setattr("cryptmail.store._sortentries._BY_MAILBOX", by_mailbox)
    alice = await rig.user("alice@example.org")
    bob = await rig.user("bob@example.org")
    fields = SortFields(DeliveryEpochs(), header_sort_fields(HEADER))
    done = [
        await deliver_message(rig.engine, rig.blobs, alice, _source(), sort_fields=fields)
        for _ in range(3)
    ]
    await deliver_message(rig.engine, rig.blobs, bob, _source(), sort_fields=fields)
    account = await _account(rig, alice)
    rows = await _rows(rig, account, done[0], done[2])
    taken = await take_sort_entries(rig.engine, account, rows)
    assert taken.uids() == {rows[0].uid, rows[1].uid}
    assert await sort_entry_count(rig.engine, alice.id) == (3, 1)  # nothing deleted
    assert await sort_entry_count(rig.engine, bob.id) == (1, 1)


async def test_the_chunk_write_deletes_folded_entries_and_old_empty_epochs(
    rig: StoreRig,
) -> None:
    user = await rig.user("alice@example.org")
    fields = SortFields(DeliveryEpochs(lifetime=0.0), header_sort_fields(HEADER))
    done = [
        await deliver_message(rig.engine, rig.blobs, user, _source(), sort_fields=fields)
        for _ in range(3)
    ]
    async with rig.engine.begin() as conn:
        box = await inbox_id(conn, user.id)
        await conn.execute(  # every epoch old enough to go once empty
            update(t.cm_sort_epochs).values(created_at=utcnow() - timedelta(hours=2))
        )
    await save_sort_chunks(
        rig.engine, box, 1, {0: b"sealed chunk"}, folded=(user.id, [done[0].row_id])
    )
    assert await sort_entry_count(rig.engine, user.id) == (2, 2)  # one epoch emptied
    async with rig.engine.begin() as conn:
        await conn.execute(
            update(t.cm_sort_epochs).values(created_at=utcnow())  # young: kept though empty
        )
    await save_sort_chunks(
        rig.engine, box, 1, {0: b"sealed chunk"}, folded=(user.id, [d.row_id for d in done])
    )
    assert await sort_entry_count(rig.engine, user.id) == (0, 2)


async def test_entries_go_with_their_message(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    fields = SortFields(DeliveryEpochs(), header_sort_fields(HEADER))
    done = await deliver_message(rig.engine, rig.blobs, user, _source(), sort_fields=fields)
    async with rig.engine.begin() as conn:
        await conn.execute(delete(t.cm_messages).where(t.cm_messages.c.id == done.row_id))
    assert await _count(rig, t.cm_sort_entries) == 0


_SRC = str(Path(__file__).resolve().parents[2] / "src")
_KILLED = """
import asyncio, sys
from pathlib import Path
from cryptmail.db import create_engine
from cryptmail.keys import install_server_key, load_server_key
from cryptmail.store import DeliveryEpochs, SortFields, deliver_message, header_sort_fields
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import get_user

async def main() -> None:
    url, blob_path, key_path, message, header = sys.argv[1:6]
    install_server_key(load_server_key(Path(key_path)))
    engine = create_engine(url)
    async with engine.connect() as conn:
        user = await get_user(conn, "alice@example.org")
    async def source():
        yield bytes.fromhex(message)
    fields = SortFields(DeliveryEpochs(), header_sort_fields(bytes.fromhex(header)))
    await deliver_message(engine, LocalBlobStore(Path(blob_path)), user, source(),
                          sort_fields=fields)

asyncio.run(main())
"""


async def test_a_process_killed_before_the_commit_leaves_no_entry(rig: StoreRig) -> None:
    """SIGKILL at the row's commit, after the epoch and the entry were inserted in its
    transaction: neither the message row nor its entry nor the epoch is left."""
    await rig.user("alice@example.org")
    env = dict(os.environ, CRYPTMAIL_CRASH_AT="append:before-row-commit")
    env["PYTHONPATH"] = _SRC
    argv = [
        sys.executable, "-c", _KILLED, rig.config.database_url, str(rig.config.blob_path),
        str(server_key().path), MESSAGE.hex(), HEADER.hex(),
    ]  # fmt: skip
    done = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert await _count(rig, t.cm_messages) == 0
    assert await _count(rig, t.cm_sort_entries) == 0
    assert await _count(rig, t.cm_sort_epochs) == 0
    env.pop("CRYPTMAIL_CRASH_AT")  # the same delivery, not killed: all three there
    done = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert await _count(rig, t.cm_messages) == 1
    assert await _count(rig, t.cm_sort_entries) == 1
    assert await _count(rig, t.cm_sort_epochs) == 1
