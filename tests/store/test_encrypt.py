"""mailbox encrypt: plain blobs become sealed, rows keep UIDs and flags, crashes resume."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update

from cryptmail import store
from cryptmail.crypto import generate_private_key, public_info
from cryptmail.db import tables as t
from cryptmail.errors import KeyLocked, RecipientKeyUnverified
from cryptmail.keys import UnlockedAccount, server_key, unlock_account
from cryptmail.store import MessageRow, UserId
from cryptmail.users import set_crypt

from .conftest import PASSWORD, StoreRig

MARKER = b"plain-marker-7f3e"


async def _source(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _message(i: int) -> bytes:
    return b"Subject: m%d\r\n\r\n" % i + MARKER + b" " + os.urandom(5000).hex().encode()


async def _deliver_plain(rig: StoreRig, email: str, count: int) -> tuple[UserId, list[bytes]]:
    user = await rig.user(email, crypt=0)
    bodies = [_message(i) for i in range(count)]
    for body in bodies:
        await store.deliver_message(rig.engine, rig.blobs, user, _source(body))
    async with rig.engine.begin() as conn:
        await set_crypt(conn, user.id, 2)
    return user.id, bodies


async def _read_all(rig: StoreRig, email: str) -> list[tuple[int, bool, bytes]]:
    account, _ = await unlock_account(rig.engine, email, PASSWORD, rig.config.crypto)
    async with rig.engine.connect() as conn:
        inbox = await store.get_mailbox(conn, account, "INBOX")
        rows = await store.load_messages(conn, account, inbox.id)
    out = []
    for row in rows:
        opened = await store.open_blob(rig.blobs, account, row.blob_id)
        out.append((row.uid, row.sealed, await store.read_plaintext(rig.blobs, opened)))
    return out


def _disk_has_marker(rig: StoreRig) -> bool:
    return any(MARKER in p.read_bytes() for p in (rig.data_dir / "blobs").rglob("*") if p.is_file())


async def test_encrypt_seals_every_plain_blob_and_keeps_uids(rig: StoreRig) -> None:
    user_id, bodies = await _deliver_plain(rig, "alice@example.org", 5)
    assert _disk_has_marker(rig)
    progress = [p async for p in store.encrypt_mailboxes(rig.engine, rig.blobs, user_id)]
    assert [p.done_messages for p in progress] == [1, 2, 3, 4, 5]
    assert progress[-1].total_messages == 5
    messages = await _read_all(rig, "alice@example.org")
    assert [uid for uid, _, _ in messages] == [1, 2, 3, 4, 5]
    assert all(sealed for _, sealed, _ in messages)
    assert [data for _, _, data in messages] == bodies
    # The plain copies left their names; a read begun before may still be on them, so
    # they are zeroed after the grace, by `serve` (here: at once).
    assert not any(MARKER in p.read_bytes() for p in rig.blobs.root.glob("[0-9a-f]*/*"))
    await rig.blobs.sweep_deleted(0)
    assert not _disk_has_marker(rig)
    # A second run has nothing to do.
    assert [p async for p in store.encrypt_mailboxes(rig.engine, rig.blobs, user_id)] == []
    assert (await store.check_store(rig.engine, rig.blobs)).clean


async def test_encrypt_refuses_a_public_key_replaced_in_sql(rig: StoreRig) -> None:
    """Like delivery, `mailbox encrypt` seals without the user: a key that is not the
    one cryptmail recorded gets nothing, and the plain mail stays as it was."""
    user_id, _bodies = await _deliver_plain(rig, "alice@example.org", 2)
    attacker = public_info(generate_private_key("x25519"))
    async with rig.engine.begin() as conn:
        await conn.execute(
            update(t.cm_key_pairs)
            .where(t.cm_key_pairs.c.user_id == user_id)
            .values(key_id=attacker.key_id, public_key=attacker.encoded)
        )
    with pytest.raises(RecipientKeyUnverified):
        async for _ in store.encrypt_mailboxes(rig.engine, rig.blobs, user_id):
            pass
    assert _disk_has_marker(rig)
    assert len([b async for b in rig.blobs.list_ids()]) == 2


async def test_encrypt_without_key_pair_is_refused(rig: StoreRig) -> None:
    with pytest.raises(KeyLocked):
        async for _ in store.encrypt_mailboxes(rig.engine, rig.blobs, UserId(999)):
            pass


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from cryptmail.config import load_config
    from pathlib import Path
    from cryptmail.db import create_engine
    from cryptmail.keys import install_server_key, load_server_key
    from cryptmail.store import encrypt_mailboxes
    from cryptmail.store.blobs import LocalBlobStore

    async def main():
        install_server_key(load_server_key(Path(sys.argv[3])))  # the one the rig sealed with
        config = load_config(None, data_dir=sys.argv[1])
        engine = create_engine(config.database_url)
        blobs = LocalBlobStore(config.blob_path)
        async for _ in encrypt_mailboxes(engine, blobs, int(sys.argv[2])):
            pass
        await engine.dispose()

    asyncio.run(main())
    """
)


@pytest.mark.parametrize(
    "checkpoint",
    [
        "append:before-blob-commit",
        "append:after-blob-commit",
        "encrypt:before-swap",
        "encrypt:after-swap",
    ],
)
async def test_killed_encrypt_resumes_without_loss(rig: StoreRig, checkpoint: str) -> None:
    user_id, bodies = await _deliver_plain(rig, "alice@example.org", 3)
    env = dict(os.environ, CRYPTMAIL_CRASH_AT=checkpoint)
    key_path = server_key().path
    command = [sys.executable, "-c", _CHILD, str(rig.data_dir), str(user_id), str(key_path)]
    killed = await asyncio.to_thread(subprocess.run, command, env=env, check=False)
    assert killed.returncode == -9
    # Whatever state the crash left, every message reads back, once, unchanged.
    assert [data for _, _, data in await _read_all(rig, "alice@example.org")] == bodies
    # Resume to the end, then the sweep removes what the crash orphaned.
    async for _ in store.encrypt_mailboxes(rig.engine, rig.blobs, user_id):
        pass
    messages = await _read_all(rig, "alice@example.org")
    assert [data for _, _, data in messages] == bodies
    assert all(sealed for _, sealed, _ in messages)
    report = await store.check_store(rig.engine, rig.blobs, fix=True, grace_s=0)
    assert report.clean, report
    assert not _disk_has_marker(rig)


async def _inbox_rows(rig: StoreRig, email: str) -> tuple[UnlockedAccount, list[MessageRow]]:
    account, _ = await unlock_account(rig.engine, email, PASSWORD, rig.config.crypto)
    async with rig.engine.connect() as conn:
        inbox = await store.get_mailbox(conn, account, "INBOX")
        return account, await store.load_messages(conn, account, inbox.id)


async def test_copy_after_encrypt_uses_the_sealed_blob_not_the_stale_row(rig: StoreRig) -> None:
    # An IMAP session loaded its rows before `mailbox encrypt` swapped and deleted the
    # plain blob; its COPY must name the blob the row names now.
    user_id, bodies = await _deliver_plain(rig, "alice@example.org", 1)
    account, stale = await _inbox_rows(rig, "alice@example.org")
    async for _ in store.encrypt_mailboxes(rig.engine, rig.blobs, user_id):
        pass
    async with rig.engine.begin() as conn:
        archive = await store.get_mailbox(conn, account, "Archive")
        assert await store.copy_messages(conn, account, stale, archive.id) == [(1, 1)]
        copy = (await store.load_messages(conn, account, archive.id))[0]
    assert copy.sealed and copy.blob_id != stale[0].blob_id
    opened = await store.open_blob(rig.blobs, account, copy.blob_id)
    assert await store.read_plaintext(rig.blobs, opened) == bodies[0]
    assert (await store.check_store(rig.engine, rig.blobs)).clean


async def test_copy_of_a_row_expunged_meanwhile_is_left_out(rig: StoreRig) -> None:
    await _deliver_plain(rig, "alice@example.org", 2)
    account, rows = await _inbox_rows(rig, "alice@example.org")
    async with rig.engine.begin() as conn:
        await store.expunge(conn, rows[0].mailbox_id, rows[:1])
        archive = await store.get_mailbox(conn, account, "Archive")
        assert await store.copy_messages(conn, account, rows, archive.id) == [(2, 1)]


async def test_encrypt_keeps_a_plain_blob_a_concurrent_copy_still_names(
    rig: StoreRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL interleaving: a COPY that locked its source row before the swap commits
    # a row naming the plain blob, which the swap's UPDATE did not see. Simulated by
    # pointing the Archive copy back at the plain blob right after the swap commits.
    user_id, bodies = await _deliver_plain(rig, "alice@example.org", 1)
    account, rows = await _inbox_rows(rig, "alice@example.org")
    async with rig.engine.begin() as conn:
        archive = await store.get_mailbox(conn, account, "Archive")
        await store.copy_messages(conn, account, rows, archive.id)
    plain_id = rows[0].blob_id
    database = rig.data_dir / "cryptmail.db"
    assert database.exists()

    def late_copy(name: str) -> None:
        if name != "encrypt:after-swap":
            return
        with sqlite3.connect(database) as db:
            db.execute(
                "UPDATE cm_messages SET blob_id = ?, sealed = 0 WHERE mailbox_id = ?",
                (plain_id, archive.id),
            )

    monkeypatch.setattr("cryptmail.store._encrypt.checkpoint", late_copy)
    async for _ in store.encrypt_mailboxes(rig.engine, rig.blobs, user_id):
        pass
    async with rig.engine.connect() as conn:
        copy = (await store.load_messages(conn, account, archive.id))[0]
    assert copy.blob_id == plain_id
    opened = await store.open_blob(rig.blobs, account, copy.blob_id)
    assert await store.read_plaintext(rig.blobs, opened) == bodies[0]
    assert (await store.check_store(rig.engine, rig.blobs)).clean
