"""Maildir import on the Dovecot 2.3 vectors: every user, both key modes.

What a client saw from Dovecot is what it sees from us: bytes with bare LF served as
CRLF, UIDs and UIDVALIDITY, flags, keywords, dates, folders. A second run adds nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from cryptmail import store
from cryptmail.crypto.dovecot import (
    DovecotKeyring,
    keyring_from_attributes,
    load_global_private_key,
    parse_attributes,
    parse_uidlist,
)
from cryptmail.db import tables as t
from cryptmail.errors import StoreError
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.secret import Password
from cryptmail.store import ImportProgress
from cryptmail.store._import import to_crlf
from cryptmail.store._maildir import decode_utf7, flags_from_info
from cryptmail.store.fulltext import user_messages

from .conftest import PASSWORD, StoreRig

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dovecot-2.3"
_ENTRIES = json.loads((VECTORS / "vectors.json").read_text())
_BY_FILE = {e["file"]: e for e in _ENTRIES}

# user -> (Dovecot user-key password, global key file, its password)
USERS: dict[str, tuple[str | None, str | None, str | None]] = {
    "alice": ("Alice-Secret-521", None, None),
    "bob": ("Bob-Secret-256", None, None),
    "carol": ("Carol-Secret", None, None),
    "erin": ("Erin-Secret", None, None),
    "grace": (None, None, None),
    "dave": (None, "dave-global-ec-p256-priv.pem", None),
    "frank": (None, "frank-global-rsa2048-priv-encrypted.pem", "frank-global-pw"),
}


def keyring_for(user: str, maildir: Path) -> DovecotKeyring:
    password, key_file, key_password = USERS[user]
    if key_file is not None:
        secret = Password.from_str(key_password) if key_password else None
        return DovecotKeyring(
            [load_global_private_key((VECTORS / "keys" / key_file).read_bytes(), secret)]
        )
    attributes = parse_attributes((maildir / "dovecot-attributes").read_bytes())
    return keyring_from_attributes(attributes, Password.from_str(password) if password else None)


def served(data: bytes) -> bytes:
    """What Dovecot's IMAP serves for stored bytes: bare LF as CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def expected_messages(user: str, maildir: Path) -> dict[str, dict[str, tuple[int, bytes]]]:
    """folder -> base name -> (UID, served bytes), from the uidlists and vectors.json."""
    out: dict[str, dict[str, tuple[int, bytes]]] = {}
    for folder, path in (("INBOX", maildir), ("Archive", maildir / ".Archive")):
        if not (path / "dovecot-uidlist").exists():
            continue
        uidlist = parse_uidlist((path / "dovecot-uidlist").read_bytes())
        for new_file in sorted((path / "new").iterdir()):
            relative = new_file.relative_to(VECTORS).as_posix()
            plain = (VECTORS / _BY_FILE[relative]["plaintext"]).read_bytes()
            record = uidlist.find(new_file.name)
            assert record is not None
            out.setdefault(folder, {})[new_file.name] = (record.uid, served(plain))
    return out


async def run_import(
    rig: StoreRig, account: UnlockedAccount, maildir: Path, keyring: DovecotKeyring, **kw: bool
) -> ImportProgress:
    events = [
        p
        async for p in store.import_maildir(rig.engine, rig.blobs, account, maildir, keyring, **kw)
    ]
    return events[-1]


async def contents(
    rig: StoreRig, account: UnlockedAccount
) -> dict[str, tuple[store.Mailbox, list[tuple[store.MessageRow, bytes]]]]:
    out = {}
    async with rig.engine.connect() as conn:
        boxes = await store.list_mailboxes(conn, account.user.id, account)
        for box in boxes:
            rows = await store.load_messages(conn, account, box.id)
            items = []
            for row in rows:
                opened = await store.open_blob(rig.blobs, account, row.blob_id)
                items.append((row, await store.read_plaintext(rig.blobs, opened)))
            out[box.name] = (box, items)
    return out


async def _account(rig: StoreRig, email: str, crypt: int = 2) -> UnlockedAccount:
    await rig.user(email, crypt=crypt)
    account, _ = await unlock_account(rig.engine, email, PASSWORD, rig.config.crypto)
    return account


@pytest.mark.parametrize("user", sorted(USERS))
async def test_vector_maildir_imports_byte_exact_with_uids(rig: StoreRig, user: str) -> None:
    maildir = VECTORS / "maildirs" / user / "Maildir"
    account = await _account(rig, f"{user}@example.org")
    result = await run_import(rig, account, maildir, keyring_for(user, maildir))
    expected = expected_messages(user, maildir)
    count = sum(len(v) for v in expected.values())
    assert (result.imported, result.done_messages, result.total_messages) == (count,) * 3
    assert result.renumbered == result.failed == result.skipped == 0
    # erin's files are format v1: no integrity, imported and counted.
    assert result.unverified == (count if user == "erin" else 0)
    assert result.missing == (1 if user == "alice" else 0)  # uid 7 was expunged

    stored = await contents(rig, account)
    for folder, messages in expected.items():
        box, items = stored[folder]
        uidlist = parse_uidlist(
            (
                (maildir if folder == "INBOX" else maildir / f".{folder}") / "dovecot-uidlist"
            ).read_bytes()
        )
        assert box.uidvalidity == uidlist.uid_validity
        assert box.uidnext >= uidlist.next_uid
        want = sorted(messages.values())
        assert [(row.uid, data) for row, data in items] == want
        for row, _data in items:
            assert row.sealed  # crypt 2
            assert row.flags == frozenset({store.RECENT_FLAG})  # all were in new/
    # Every other folder is a default folder, empty.
    assert all(not items for name, (_, items) in stored.items() if name not in expected)
    # The second run adds nothing.
    again = await run_import(rig, account, maildir, keyring_for(user, maildir))
    assert (again.imported, again.skipped) == (0, count)
    assert await contents(rig, account) == stored
    assert (await store.check_store(rig.engine, rig.blobs)).clean


async def test_erin_v1_refused_without_allow_unauthenticated(rig: StoreRig) -> None:
    maildir = VECTORS / "maildirs" / "erin" / "Maildir"
    account = await _account(rig, "erin@example.org")
    with pytest.raises(StoreError, match="could not be read"):
        await run_import(
            rig, account, maildir, keyring_for("erin", maildir), allow_unauthenticated=False
        )


async def test_wrong_key_is_an_error_or_left_out(rig: StoreRig) -> None:
    maildir = VECTORS / "maildirs" / "bob" / "Maildir"
    account = await _account(rig, "bob@example.org")
    wrong = keyring_for("alice", VECTORS / "maildirs" / "alice" / "Maildir")
    with pytest.raises(StoreError, match="could not be read"):
        await run_import(rig, account, maildir, wrong)
    result = await run_import(rig, account, maildir, wrong, skip_unreadable=True)
    # The empty file has no header: it is read as it is; the three others fail.
    assert (result.imported, result.failed) == (1, 3)


def _synthetic_maildir(tmp: Path) -> Path:
    """alice's Maildir plus cur/ files with flags and keywords, a CRLF file, a plain
    file among encrypted ones and nested folders with a non-ASCII name."""
    root = tmp / "Maildir"
    shutil.copytree(VECTORS / "maildirs" / "alice" / "Maildir", root)
    cur = root / "cur"
    cur.mkdir()
    new = root / "new"
    os.rename(
        new / "1795865478.M369764P15125.vm,S=334,W=345",
        cur / "1795865478.M369764P15125.vm,S=334,W=345:2,FSac",
    )
    os.rename(
        new / "1795865478.M411295P15126.vm,S=442,W=453",
        cur / "1795865478.M411295P15126.vm,S=442,W=453:2,RT",
    )
    (root / "dovecot-keywords").write_text("0 $Forwarded\n1 Junk-ish\n2 work\n")
    # Not in the uidlist: plain files Dovecot has not seen yet, one with CRLF.
    (new / "1800000000.M1P1.host,S=9").write_bytes(b"A: b\r\n\r\nx\r\n")
    (new / "1800000001.M1P1.host").write_bytes(b"C: d\n\ny\n")
    when = 1_700_000_000
    os.utime(new / "1800000000.M1P1.host,S=9", (when, when))
    nested = root / ".Work.Caf&AOk-"
    for sub in ("cur", "new", "tmp"):
        (nested / sub).mkdir(parents=True)
    (nested / "cur" / "1800000002.M1P1.host:2,S").write_bytes(b"Subject: caf\xc3\xa9\n\nbody\n")
    (root / ".Sent Messages" / "new").mkdir(parents=True)
    (root / ".Sent Messages" / "new" / "1800000003.M1P1.host").write_bytes(b"S: 1\n\n")
    return root


async def test_flags_keywords_dates_folders_and_crlf(rig: StoreRig, tmp_path: Path) -> None:
    root = _synthetic_maildir(tmp_path)
    account = await _account(rig, "alice@example.org")
    result = await run_import(rig, account, root, keyring_for("alice", root))
    assert result.imported == 11
    stored = await contents(rig, account)
    assert {"INBOX", "Archive", "Sent", "Work/Café"} <= set(stored)
    assert "Work" not in stored  # Dovecot shows it \NoSelect; nothing to import
    _, inbox = stored["INBOX"]
    by_uid = {row.uid: (row, data) for row, data in inbox}
    assert by_uid[2][0].flags == {"\\Flagged", "\\Seen", "$Forwarded", "work"}
    assert by_uid[3][0].flags == {"\\Answered", "\\Deleted"}
    assert store.RECENT_FLAG in by_uid[1][0].flags
    # Files the uidlist does not name come after its N, in name order.
    assert by_uid[8][1] == b"A: b\r\n\r\nx\r\n"  # CRLF kept as it is
    assert by_uid[8][0].internal_date == datetime.fromtimestamp(1_700_000_000, UTC).replace(
        tzinfo=None
    )
    assert by_uid[9][1] == b"C: d\r\n\r\ny\r\n"
    _, work = stored["Work/Café"]
    assert [(row.uid, row.flags, data) for row, data in work] == [
        (1, frozenset({"\\Seen"}), "Subject: café\r\n\r\nbody\r\n".encode())
    ]
    assert [data for _, data in stored["Sent"][1]] == [b"S: 1\r\n\r\n"]
    again = await run_import(rig, account, root, keyring_for("alice", root))
    assert (again.imported, again.skipped) == (0, 11)


async def test_crypt_zero_user_gets_plain_blobs(rig: StoreRig) -> None:
    maildir = VECTORS / "maildirs" / "dave" / "Maildir"
    account = await _account(rig, "dave@example.org", crypt=0)
    await run_import(rig, account, maildir, keyring_for("dave", maildir))
    _, items = (await contents(rig, account))["INBOX"]
    assert len(items) == 4 and not any(row.sealed for row, _ in items)


async def test_uids_renumbered_when_the_folder_has_other_mail(rig: StoreRig) -> None:
    maildir = VECTORS / "maildirs" / "carol" / "Maildir"
    account = await _account(rig, "carol@example.org")

    async def one() -> AsyncIterator[bytes]:
        yield b"Subject: first\r\n\r\n"

    await store.deliver_message(rig.engine, rig.blobs, account.user, one())
    result = await run_import(rig, account, maildir, keyring_for("carol", maildir))
    assert (result.imported, result.renumbered) == (2, 2)
    _, items = (await contents(rig, account))["INBOX"]
    assert [row.uid for row, _ in items] == [1, 2, 3]


def test_crlf_across_pieces() -> None:
    assert to_crlf(b"a\nb\r\nc\r", False) == b"a\r\nb\r\nc\r"
    assert to_crlf(b"\nd\n", True) == b"\nd\r\n"
    assert to_crlf(b"\nd", False) == b"\r\nd"
    assert to_crlf(b"x\r\r\ny", False) == b"x\r\r\ny"


def test_modified_utf7_and_info_letters() -> None:
    assert decode_utf7("Caf&AOk-") == "Café"
    assert decode_utf7("A&-B") == "A&B"
    assert decode_utf7("&ZeVnLIqe-") == "日本語"
    keywords = {"a": "one", "c": "three"}
    assert flags_from_info("2,DFPRSTabc", keywords) == {
        "\\Draft",
        "\\Flagged",
        "\\Answered",
        "\\Seen",
        "\\Deleted",
        "one",
        "three",
    }
    assert flags_from_info("1,S", keywords) == frozenset()


async def _caches(rig: StoreRig, account: UnlockedAccount) -> dict[int, bytes | None]:
    """Each INBOX row's sealed cache by UID."""
    async with rig.engine.connect() as conn:
        box = await store.get_mailbox(conn, account, "INBOX")
        rows = await conn.execute(
            select(t.cm_messages.c.uid, t.cm_messages.c.cache_sealed).where(
                t.cm_messages.c.mailbox_id == box.id
            )
        )
        return {int(uid): None if c is None else bytes(c) for uid, c in rows}


async def test_imported_rows_are_left_to_the_pass_with_their_first_flags(
    rig: StoreRig, tmp_path: Path
) -> None:
    """Issue 16: an import seals no cache (the pass seals the whole one, analysis and
    all, from its one read; a cache of size and key alone hid the row from it), only
    the first flags: the listing of the pass names every imported row uncached, and a
    SELECT sees the flags and \\Recent of new/ as before."""
    root = _synthetic_maildir(tmp_path)
    account = await _account(rig, "alice@example.org")
    await run_import(rig, account, root, keyring_for("alice", root))
    assert set((await _caches(rig, account)).values()) == {None}
    listed = await user_messages(rig.engine, account.user.id)
    assert sum(len(rows) for rows in listed.uncached.values()) == 11
    _, inbox = (await contents(rig, account))["INBOX"]
    by_uid = {row.uid: row for row, _ in inbox}
    assert all(row.claimed for row in by_uid.values())
    assert by_uid[3].flags == {"\\Answered", "\\Deleted"}
    assert store.RECENT_FLAG in by_uid[1].flags


async def test_drop_bare_caches_clears_only_caches_without_the_analysis(
    rig: StoreRig, tmp_path: Path
) -> None:
    """What an older import left (size and key) is cleared for the pass; a cache with
    the analysis, one of another user and one that fails to open are kept."""
    maildir = _synthetic_maildir(tmp_path)
    carol = await _account(rig, "carol@example.org")
    dave = await _account(rig, "dave@example.org", crypt=0)
    for account in (carol, dave):
        await run_import(rig, account, maildir, keyring_for("alice", maildir))
    for account in (carol, dave):
        async with rig.engine.begin() as conn:
            box = await store.get_mailbox(conn, account, "INBOX")
            rows = await store.load_messages(conn, account, box.id)
            for row in rows:
                key = bytes(range(32)) if account.user.crypt == 2 else None
                extra = b"analysis" if row.uid == 1 else b""
                cache = store.MessageCache(len(rows) * 100 + row.uid, key, extra)
                await store.save_cache(conn, account, row, cache)
    bad_uid = max(await _caches(rig, carol))
    async with rig.engine.begin() as conn:  # the last row's cache moved onto another row
        box = await store.get_mailbox(conn, carol, "INBOX")
        sealed = (await _caches(rig, carol))[2]
        await conn.execute(
            update(t.cm_messages)
            .where(t.cm_messages.c.mailbox_id == box.id, t.cm_messages.c.uid == bad_uid)
            .values(cache_sealed=sealed)
        )
    before = await _caches(rig, carol)
    dave_before = await _caches(rig, dave)
    assert await store.drop_bare_caches(rig.engine, carol) == len(before) - 2
    after = await _caches(rig, carol)
    assert after[1] == before[1] and after[bad_uid] == before[bad_uid]
    assert all(after[uid] is None for uid in after if uid not in (1, bad_uid))
    assert await _caches(rig, dave) == dave_before
    assert await store.drop_bare_caches(rig.engine, carol) == 0
