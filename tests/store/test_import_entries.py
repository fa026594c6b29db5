"""Sort entries from imports: each sealed imported message gets one, written with its
row, under one epoch per run (kept across batches only once one committed), opening
to the keys the slow path makes from the stored bytes; a plain copy gets none, a
failed batch leaves none and its rerun writes each once; no header word at rest. The
same for mail sealed without a password and placed at the login."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptmail.crypto.dovecot import DovecotKeyring
from cryptmail.keys import UnlockedAccount
from cryptmail.store import _import as import_module
from cryptmail.store import header_sort_fields, seal_maildir, sort_entry_count, take_sort_entries
from cryptmail.store.sortkeys import SortKeys, sort_keys

from .conftest import StoreRig
from .test_import import _account, contents, run_import
from .test_sealed_import import _login_places

WORD = b"Quillowhisk"
PLAIN = DovecotKeyring()


def _maildir(root: Path) -> Path:
    """A plain Maildir: INBOX with 5 messages (bare LF, as Dovecot keeps them), one
    folder with 2; every header names WORD."""
    for folder, count in ((root, 5), (root / ".Lists", 2)):
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True)
        for n in range(1, count + 1):
            (folder / "cur" / f"17000000{n:02d}.M{n}P1.host:2,S").write_bytes(
                b"From: " + WORD + b" <w@example.net>\nTo: t@example.org\n"
                b"Subject: Re: " + WORD + b" %d\nDate: Mon, %d Dec 2026 06:00:00 +0000\n"
                b"Message-ID: <%d@example.net>\n\nbody %d\n" % (n, n, n, n)
            )
    return root


async def _slow_and_taken(
    rig: StoreRig, account: UnlockedAccount
) -> list[tuple[dict[int, SortKeys], dict[int, SortKeys]]]:
    """Per folder: the keys the slow path makes from each stored message, and those
    its entry opens to, by UID."""
    out = []
    for _box, items in (await contents(rig, account)).values():
        if not items:
            continue
        slow = {
            row.uid: sort_keys(header_sort_fields(data.split(b"\r\n\r\n")[0]))._replace(
                size=len(data), arrival=row.internal_date.timestamp()
            )
            for row, data in items
        }
        taken = await take_sort_entries(rig.engine, account, [row for row, _ in items])
        out.append((slow, dict(taken.ready.keys() + taken.made)))
    return out


async def test_each_sealed_import_has_an_entry_with_the_slow_paths_keys(
    rig: StoreRig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(import_module, "BATCH_MESSAGES", 2)  # several batches, one epoch
    account = await _account(rig, "alice@example.org")
    result = await run_import(rig, account, _maildir(tmp_path / "Maildir"), PLAIN)
    assert result.imported == 7
    assert await sort_entry_count(rig.engine, account.user.id) == (7, 1)
    folders = await _slow_and_taken(rig, account)
    assert [len(slow) for slow, _ in folders] == [5, 2]
    for slow, taken in folders:
        assert taken == slow
    # Nothing of a header at rest: not in the database file, not in a blob.
    for path in rig.data_dir.rglob("*"):
        if path.is_file():
            assert WORD not in path.read_bytes(), path
    again = await run_import(rig, account, tmp_path / "Maildir", PLAIN)
    assert (again.imported, again.skipped) == (0, 7)
    assert await sort_entry_count(rig.engine, account.user.id) == (7, 1)


async def test_a_plain_import_writes_no_entry(rig: StoreRig, tmp_path: Path) -> None:
    account = await _account(rig, "plain@example.org", crypt=0)
    assert (await run_import(rig, account, _maildir(tmp_path / "Maildir"), PLAIN)).imported == 7
    assert await sort_entry_count(rig.engine, account.user.id) == (0, 0)


@pytest.mark.parametrize(
    ("failing", "left", "epochs"),
    [(1, (0, 0), 1), (2, (2, 1), 2)],
    ids=["first batch: its new epoch", "second: the epoch held"],
)
async def test_a_failed_batch_leaves_no_entry_and_its_rerun_writes_each_once(
    rig: StoreRig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing: int,
    left: tuple[int, int],
    epochs: int,
) -> None:
    monkeypatch.setattr(import_module, "BATCH_MESSAGES", 2)
    maildir = _maildir(tmp_path / "Maildir")
    account = await _account(rig, "alice@example.org")
    commits = 0

    def checkpoint(name: str) -> None:
        nonlocal commits
        if name == "import:before-commit":
            commits += 1
            if commits == failing:
                raise RuntimeError("killed")

    monkeypatch.setattr(import_module, "checkpoint", checkpoint)
    with pytest.raises(RuntimeError, match="killed"):
        await run_import(rig, account, maildir, PLAIN)
    assert await sort_entry_count(rig.engine, account.user.id) == left
    result = await run_import(rig, account, maildir, PLAIN)
    assert (result.imported, result.skipped) == (7 - left[0], left[0])
    # The rerun is a new run: a new epoch (the first batch's, if it failed, is gone).
    assert await sort_entry_count(rig.engine, account.user.id) == (7, epochs)
    for slow, taken in await _slow_and_taken(rig, account):
        assert taken == slow


async def test_mail_sealed_without_a_password_gets_entries_when_placed(
    rig: StoreRig, tmp_path: Path
) -> None:
    maildir = _maildir(tmp_path / "Maildir")
    email = "staged@example.org"
    found = await rig.user(email)
    steps = [p async for p in seal_maildir(rig.engine, rig.blobs, found.id, maildir, PLAIN)]
    assert steps[-1].imported == 7
    assert await sort_entry_count(rig.engine, found.id) == (0, 0)  # no rows yet
    for path in rig.data_dir.rglob("*"):  # the records wait in the sealed manifest
        if path.is_file():
            assert WORD not in path.read_bytes(), path
    account = await _login_places(rig, email)
    assert await sort_entry_count(rig.engine, found.id) == (7, 1)
    for slow, taken in await _slow_and_taken(rig, account):
        assert taken == slow


async def test_a_plain_user_staged_gets_no_entry(rig: StoreRig, tmp_path: Path) -> None:
    maildir = _maildir(tmp_path / "Maildir")
    email = "plainstaged@example.org"
    found = await rig.user(email, crypt=0)
    assert [p async for p in seal_maildir(rig.engine, rig.blobs, found.id, maildir, PLAIN)]
    account = await _login_places(rig, email)
    assert sum(len(items) for _b, items in (await contents(rig, account)).values()) == 7
    assert await sort_entry_count(rig.engine, found.id) == (0, 0)
