"""The import a login starts: in the background, with the Dovecot keys that login's
password opens, once however many logins race, back to staged for a password that does
not open them, and with Dovecot's UIDs next to mail delivered meanwhile."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cryptmail import store
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.secret import Password
from cryptmail.store import FirstLoginImports, StagedSource, list_staged, stage_import

from .conftest import PASSWORD, StoreRig
from .test_import import VECTORS, contents, expected_messages

DOVECOT_PASSWORD = Password.from_str("Alice-Secret-521")


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    root = tmp_path / "Maildir"
    shutil.copytree(VECTORS / "maildirs" / "alice" / "Maildir", root)
    return root


async def _staged_account(rig: StoreRig, maildir: Path) -> UnlockedAccount:
    user = await rig.user("alice@example.org")
    await stage_import(rig.engine, user.id, StagedSource(maildir, None))
    account, _ = await unlock_account(rig.engine, user.email, PASSWORD, rig.config.crypto)
    return account


async def _one() -> AsyncIterator[bytes]:
    yield b"Subject: new\r\n\r\nbody\r\n"


async def test_racing_logins_import_once_with_dovecot_uids(
    rig: StoreRig, maildir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    account = await _staged_account(rig, maildir)
    imports = FirstLoginImports(rig.engine, rig.blobs, stale_after_s=60)
    notices = await asyncio.gather(
        *(imports.after_login(account, DOVECOT_PASSWORD) for _ in range(5))
    )
    assert all(n is not None and n.total == 7 for n in notices)
    delivered = await store.deliver_message(rig.engine, rig.blobs, account.user, _one())
    await imports.wait(account.user.id)
    assert imports.progress(account.user.id) is None
    (row,) = await list_staged(rig.engine, account.user.id)
    assert (row.state, row.done_messages, row.total_messages) == ("done", 7, 7)

    stored = await contents(rig, account)
    for folder, messages in expected_messages(
        "alice", VECTORS / "maildirs" / "alice" / "Maildir"
    ).items():
        _, items = stored[folder]
        got = {r.uid: data for r, data in items if r.id != delivered.row_id}
        assert got == dict(messages.values()), folder
        assert all(r.sealed for r, _ in items)
    assert delivered.uid > max(
        uid
        for uid, _ in expected_messages("alice", VECTORS / "maildirs" / "alice" / "Maildir")[
            "INBOX"
        ].values()
    )
    # A later login finds nothing to do.
    assert await imports.after_login(account, DOVECOT_PASSWORD) is None
    assert "Alice-Secret-521" not in caplog.text and str(maildir) not in caplog.text


async def test_a_password_that_does_not_open_the_dovecot_keys_leaves_it_staged(
    rig: StoreRig, maildir: Path
) -> None:
    account = await _staged_account(rig, maildir)
    imports = FirstLoginImports(rig.engine, rig.blobs, stale_after_s=60)
    assert await imports.after_login(account, PASSWORD) is not None
    await imports.wait(account.user.id)
    (row,) = await list_staged(rig.engine, account.user.id)
    assert row.state == "staged" and row.done_messages == 0
    assert await imports.running(account.user.id) is None
    # The next login with the Dovecot password imports it.
    await imports.after_login(account, DOVECOT_PASSWORD)
    await imports.wait(account.user.id)
    (row,) = await list_staged(rig.engine, account.user.id)
    assert row.state == "done"


async def test_a_deleted_maildir_fails_without_naming_it(rig: StoreRig, maildir: Path) -> None:
    account = await _staged_account(rig, maildir)
    shutil.rmtree(maildir)  # the admin deleted the Dovecot tree too early
    imports = FirstLoginImports(rig.engine, rig.blobs, stale_after_s=60)
    await imports.after_login(account, DOVECOT_PASSWORD)
    await imports.wait(account.user.id)
    (row,) = await list_staged(rig.engine, account.user.id)
    assert row.state == "failed" and row.error is not None
    assert str(maildir) not in row.error


async def test_a_stopped_server_puts_it_back_to_staged(rig: StoreRig, maildir: Path) -> None:
    account = await _staged_account(rig, maildir)
    imports = FirstLoginImports(rig.engine, rig.blobs, stale_after_s=60)
    await imports.after_login(account, DOVECOT_PASSWORD)
    await imports.close()
    (row,) = await list_staged(rig.engine, account.user.id)
    assert row.state in ("staged", "done")  # done if it was quicker than the close
    again = FirstLoginImports(rig.engine, rig.blobs, stale_after_s=60)
    await again.after_login(account, DOVECOT_PASSWORD)
    await again.wait(account.user.id)
    (row,) = await list_staged(rig.engine, account.user.id)
    assert (row.state, row.done_messages) == ("done", 7)
    stored = await contents(rig, account)
    assert sum(len(items) for _, items in stored.values()) == 7


async def test_a_damaged_file_is_left_out_and_counted(rig: StoreRig, maildir: Path) -> None:
    account = await _staged_account(rig, maildir)
    damaged = sorted((maildir / "new").iterdir())[1]
    data = bytearray(damaged.read_bytes())
    data[-40] ^= 1
    damaged.write_bytes(bytes(data))
    imports = FirstLoginImports(rig.engine, rig.blobs, stale_after_s=60)
    await imports.after_login(account, DOVECOT_PASSWORD)
    await imports.wait(account.user.id)
    (row,) = await list_staged(rig.engine, account.user.id)
    assert (row.state, row.done_messages) == ("done", 7)
    assert row.error is not None and row.error.startswith("1 file(s) did not decrypt")
    stored = await contents(rig, account)
    assert sum(len(items) for _, items in stored.values()) == 6


async def test_a_stop_that_keeps_coming_stops_it_and_the_next_login_resumes(
    rig: StoreRig, maildir: Path
) -> None:
    # A stop cancelled again while it puts the row back (asyncio.run's own cancel, a
    # second SIGTERM): nothing of the import may run on after the stop, and the row must
    # be staged again for the next login, not left running until its heartbeat is stale.
    account = await _staged_account(rig, maildir)
    imports = FirstLoginImports(rig.engine, rig.blobs, stale_after_s=3600)
    before = asyncio.all_tasks()
    await imports.after_login(account, DOVECOT_PASSWORD)
    closing = asyncio.create_task(imports.close())
    await asyncio.sleep(0)  # the stop begins
    while not closing.done():
        closing.cancel()
        await asyncio.sleep(0)
    assert closing.cancelled()
    left = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
    assert left == []
    (row,) = await list_staged(rig.engine, account.user.id)
    assert row.state == "staged"

    again = FirstLoginImports(rig.engine, rig.blobs, stale_after_s=3600)
    notice = await again.after_login(account, DOVECOT_PASSWORD)
    assert notice is not None and notice.total == 7
    await again.wait(account.user.id)
    (row,) = await list_staged(rig.engine, account.user.id)
    assert (row.state, row.done_messages) == ("done", 7)
    stored = await contents(rig, account)
    assert sum(len(items) for _, items in stored.values()) == 7
