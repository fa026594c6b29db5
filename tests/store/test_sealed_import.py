"""Plain and global-key Maildirs imported without the user's password: sealed to the
public key at once (nothing readable at rest, not even folder names), kept by the
sweep of unreferenced blobs, and placed in the folders with Dovecot's UIDs at the next
login, whatever its password."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import select

from cryptmail import store
from cryptmail.crypto.dovecot import DovecotKeyring
from cryptmail.db import tables as t
from cryptmail.errors import KeyLocked, StoreError
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.secret import Password
from cryptmail.store import FirstLoginImports, ImportProgress, list_staged, seal_maildir
from cryptmail.store._sealed_import import _decode, _encode
from cryptmail.store._staged import SEALING
from cryptmail.users import add_user, get_user, hash_password

from .conftest import PASSWORD, StoreRig
from .test_import import VECTORS, contents, expected_messages, keyring_for

MARKER = b"Zebra-Quokka-7731"
PLAIN = DovecotKeyring()


async def _seal(
    rig: StoreRig, email: str, maildir: Path, keyring: DovecotKeyring
) -> ImportProgress:
    async with rig.engine.connect() as conn:
        found = await get_user(conn, email)
    steps = [p async for p in seal_maildir(rig.engine, rig.blobs, found.id, maildir, keyring)]
    return steps[-1]


async def _login_places(rig: StoreRig, email: str) -> UnlockedAccount:
    account, _ = await unlock_account(rig.engine, email, PASSWORD, rig.config.crypto)
    imports = FirstLoginImports(rig.engine, rig.blobs, stale_after_s=60)
    # Any password will do: nothing of Dovecot's is opened at this login.
    assert await imports.after_login(account, Password.from_str("unrelated")) is not None
    await imports.wait(account.user.id)
    return account


@pytest.mark.parametrize("user", ["dave", "frank"])
async def test_global_key_mail_is_sealed_now_and_placed_at_login(rig: StoreRig, user: str) -> None:
    maildir = VECTORS / "maildirs" / user / "Maildir"
    email = f"{user}@example.org"
    await rig.user(email)
    result = await _seal(rig, email, maildir, keyring_for(user, maildir))
    assert (result.imported, result.failed) == (result.total_messages, 0)
    async with rig.engine.connect() as conn:
        assert (await conn.execute(select(t.cm_messages.c.id))).first() is None
    report = await store.check_store(rig.engine, rig.blobs, fix=True, grace_s=0)
    assert not report.orphans and not report.removed  # the sweep keeps them
    (row,) = await list_staged(rig.engine)
    assert (row.state, row.total_messages) == ("staged", result.imported)

    account = await _login_places(rig, email)
    (row,) = await list_staged(rig.engine)
    assert (row.state, row.done_messages) == ("done", result.imported)
    stored = await contents(rig, account)
    for folder, messages in expected_messages(user, maildir).items():
        box, items = stored[folder]
        assert {r.uid: data for r, data in items} == dict(messages.values()), folder
        assert all(r.sealed for r, _ in items)
    # Placed: rows name the blobs; the manifest is unreferenced now and swept.
    report = await store.check_store(rig.engine, rig.blobs, fix=True, grace_s=0)
    assert len(report.removed) == 1 and not report.missing


def _plain_maildir(root: Path) -> None:
    for folder in (root, root / f".Folder-{MARKER.decode()}"):
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True)
        (folder / "dovecot-uidlist").write_text(
            "3 V1700000001 N9\n5 :1700000000.M1P1.host\n8 :1700000000.M2P1.host\n"
        )
        (folder / "cur" / "1700000000.M1P1.host:2,FS").write_bytes(
            b"Subject: " + MARKER + b"\n\nbody one " + MARKER + b"\n"
        )
        (folder / "new" / "1700000000.M2P1.host").write_bytes(b"Subject: two\n\nbody two\n")


async def test_plain_mail_leaves_nothing_readable_until_placed(
    rig: StoreRig, tmp_path: Path
) -> None:
    maildir = tmp_path / "Maildir"
    _plain_maildir(maildir)
    email = "plain@example.org"
    await rig.user(email)
    async with rig.engine.connect() as conn:
        found = await get_user(conn, email)
    steps = [p async for p in seal_maildir(rig.engine, rig.blobs, found.id, maildir, PLAIN)]
    assert steps[-1].imported == 4
    shutil.rmtree(maildir)  # not needed any more
    # T1: not a byte of the marker (body, subject, folder name) anywhere at rest.
    for directory, _, files in os.walk(rig.data_dir):
        for name in files:
            data = (Path(directory) / name).read_bytes()
            assert MARKER not in data and MARKER.lower() not in data, name

    # A delivery before the login takes a UID above Dovecot's.
    async def one() -> AsyncIterator[bytes]:
        yield b"Subject: new\r\n\r\nbody\r\n"

    delivered = await store.deliver_message(rig.engine, rig.blobs, found, one())
    assert delivered.uid == 9

    account = await _login_places(rig, email)
    stored = await contents(rig, account)
    box, items = stored[f"Folder-{MARKER.decode()}"]
    assert box.uidvalidity == 1700000001
    assert {r.uid: data for r, data in items} == {
        5: b"Subject: " + MARKER + b"\r\n\r\nbody one " + MARKER + b"\r\n",
        8: b"Subject: two\r\n\r\nbody two\r\n",
    }
    assert sorted(r.uid for r, _ in stored["INBOX"][1]) == [5, 8, 9]
    assert {r.uid: sorted(r.flags) for r, _ in items}[5] == ["\\Flagged", "\\Seen"]


async def test_no_key_no_seal_and_a_dead_run_starts_over(rig: StoreRig, tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    _plain_maildir(maildir)
    async with rig.engine.begin() as conn:
        keyless = await add_user(conn, "legacy@example.org", hash_password(PASSWORD), crypt=2)
    with pytest.raises(KeyLocked, match="no verified public key"):
        await _seal(rig, "legacy@example.org", maildir, PLAIN)
    email = "plain@example.org"
    await rig.user(email)
    async with rig.engine.connect() as conn:
        found = await get_user(conn, email)
    # A run that dies while sealing leaves a `sealing` row; the next run replaces it.
    steps = cast(
        AsyncGenerator[ImportProgress, None],
        seal_maildir(rig.engine, rig.blobs, found.id, maildir, PLAIN),
    )
    await anext(steps)
    await steps.aclose()
    assert [r.state for r in await list_staged(rig.engine)] == [SEALING]
    result = [p async for p in seal_maildir(rig.engine, rig.blobs, found.id, maildir, PLAIN)][-1]
    assert result.imported == 4
    assert [r.state for r in await list_staged(rig.engine)] == ["staged"]
    with pytest.raises(StoreError, match="staged or running already"):
        await _seal(rig, email, maildir, PLAIN)
    assert keyless.id != found.id


def test_a_version_1_manifest_is_placed_without_records() -> None:
    """Staged before the records: its messages are placed, sorted the slow way."""
    message = {"folder": "INBOX", "base": "b", "new": False, "mtime": 1.0, "uid": 3,
               "flags": [], "blob": "00" * 16, "size": 9, "sealed": True, "key": None}  # fmt: skip
    old = {"version": 1, "folders": [], "messages": [message]}
    (entry,) = _decode(json.dumps(old).encode())[1]
    assert entry.sort is None and entry.uid == 3
    record = b"subject:x\n"
    (entry,) = _decode(_encode([], [replace(entry, sort=record)]))[1]
    assert entry.sort == record
    with pytest.raises(StoreError, match="version 3"):
        _decode(json.dumps({**old, "version": 3}).encode())
