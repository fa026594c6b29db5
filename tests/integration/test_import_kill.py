"""SIGKILL `cryptmail import maildir` and `cryptmail mailbox encrypt` at random points,
several times each, then let them finish: every message is there exactly once, with its
UID, flags and bytes, and (after encrypt) sealed; the store check finds nothing left.
An import to a crypt 2 user, killed the same way, also leaves each sealed message
exactly one sort entry, opening to the keys its stored bytes give.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cryptmail.db import create_engine
from cryptmail.keys import unlock_account
from cryptmail.secret import Password
from cryptmail.store import (
    header_sort_fields,
    list_mailboxes,
    load_messages,
    open_blob,
    read_plaintext,
    sort_entry_count,
    take_sort_entries,
)
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.store.sortkeys import SortKeys, sort_keys

from .cryptmail_server import CRYPTO, PASSWORD, db_url, make_users, store_check

pytestmark = pytest.mark.integration

EMAIL = "kill@example.org"
COUNT = 300
_FLAG_INFO = ["", "S", "FS", "RS", "T"]
_FLAGS = {"S": "\\Seen", "F": "\\Flagged", "R": "\\Answered", "T": "\\Deleted"}
Expected = dict[str, dict[int, tuple[bytes, frozenset[str]]]]
"""{folder: {uid: (bytes, flags)}}: what an import must bring back."""


def _maildir(root: Path) -> Expected:
    """A plain Maildir: INBOX and Archive, a uidlist each; returns what must come back."""
    rng = random.Random(7)
    expected: Expected = {}
    for name, folder in (("INBOX", root), ("Archive", root / ".Archive")):
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True)
        lines = [f"3 V{1_234_000 + len(expected)} N{COUNT + 10}"]
        messages = {}
        for uid in range(1, COUNT // 2 + 1):
            body = b"Subject: %d\n\n" % uid + os.urandom(rng.randint(10, 30_000)).hex().encode()
            base = f"1700000000.M{uid}P1.host"
            info = _FLAG_INFO[uid % len(_FLAG_INFO)]
            (folder / "cur" / f"{base}:2,{info}").write_bytes(body)
            lines.append(f"{uid} :{base}")
            flags = frozenset(_FLAGS[c] for c in info)
            messages[uid] = (body.replace(b"\n", b"\r\n"), flags)
        (folder / "dovecot-uidlist").write_text("\n".join(lines) + "\n")
        expected[name] = messages
    return expected


def _cli(data_dir: Path, *argv: str) -> list[str]:
    return [sys.executable, "-m", "cryptmail", "--data-dir", str(data_dir), *argv]


def _killed_runs(argv: list[str], stdin: bytes, rng: random.Random, times: int) -> int:
    """Start `argv` and SIGKILL it after a random delay, `times` times; returns kills."""
    kills = 0
    for _ in range(times):
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        assert process.stdin is not None
        process.stdin.write(stdin)
        process.stdin.close()
        time.sleep(rng.uniform(0.6, 1.8))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(30)
    return kills


def _stored(data_dir: Path) -> dict[str, dict[int, tuple[bytes, frozenset[str], bool]]]:
    async def run() -> dict[str, dict[int, tuple[bytes, frozenset[str], bool]]]:
        engine = create_engine(db_url(data_dir))
        blobs = LocalBlobStore(data_dir / "blobs")
        account, _ = await unlock_account(engine, EMAIL, Password.from_str(PASSWORD), CRYPTO)
        out: dict[str, dict[int, tuple[bytes, frozenset[str], bool]]] = {}
        async with engine.connect() as conn:
            for box in await list_mailboxes(conn, account.user.id, account):
                rows = await load_messages(conn, account, box.id)
                uids = [r.uid for r in rows]
                assert len(uids) == len(set(uids))
                out[box.name] = {
                    r.uid: (
                        await read_plaintext(blobs, await open_blob(blobs, account, r.blob_id)),
                        r.flags,
                        r.sealed,
                    )
                    for r in rows
                }
        await engine.dispose()
        return out

    return asyncio.run(run())


def _check(data_dir: Path, expected: Expected, *, sealed: bool) -> None:
    stored = _stored(data_dir)
    for name, messages in expected.items():
        got = stored[name]
        assert sorted(got) == sorted(messages), name
        for uid, (data, flags) in messages.items():
            assert got[uid][:2] == (data, flags), (name, uid)
            assert got[uid][2] is sealed


def _entries(data_dir: Path) -> tuple[int, list[tuple[SortKeys | None, SortKeys]]]:
    """(the user's sort entries, and per message the keys its entry opens to (None: no
    entry) with those the slow path makes from its stored bytes)."""

    async def run() -> tuple[int, list[tuple[SortKeys | None, SortKeys]]]:
        engine = create_engine(db_url(data_dir))
        blobs = LocalBlobStore(data_dir / "blobs")
        account, _ = await unlock_account(engine, EMAIL, Password.from_str(PASSWORD), CRYPTO)
        pairs: list[tuple[SortKeys | None, SortKeys]] = []
        async with engine.connect() as conn:
            boxes = await list_mailboxes(conn, account.user.id, account)
            rows = [await load_messages(conn, account, box.id) for box in boxes]
        for box_rows in rows:
            taken = await take_sort_entries(engine, account, box_rows)
            opened = dict(taken.ready.keys() + taken.made)
            for row in box_rows:
                data = await read_plaintext(blobs, await open_blob(blobs, account, row.blob_id))
                slow = sort_keys(header_sort_fields(data.split(b"\r\n\r\n")[0]))._replace(
                    size=len(data), arrival=row.internal_date.timestamp()
                )
                pairs.append((opened.get(row.uid), slow))
        count, _epochs = await sort_entry_count(engine, account.user.id)
        await engine.dispose()
        return count, pairs

    return asyncio.run(run())


def _killed_import(tmp_path: Path, crypt: int) -> tuple[Path, Expected, random.Random]:
    """A user with `crypt` and a Maildir imported into it, killed five times, then run
    to its end; returns the data dir, what must come back, and the test's random."""
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"random seed {seed}")
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {EMAIL: crypt})
    expected = _maildir(tmp_path / "Maildir")
    stdin = f"{PASSWORD}\n".encode()
    command = _cli(data_dir, "import", "maildir", EMAIL, str(tmp_path / "Maildir"))
    command.append("--password-stdin")
    kills = _killed_runs(command, stdin, rng, 5)
    done = subprocess.run(command, input=stdin, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    print(f"import killed {kills} times; last run: {done.stderr.decode().splitlines()[-1]}")
    return data_dir, expected, rng


def test_killed_import_and_encrypt_finish_with_every_message_once(tmp_path: Path) -> None:
    data_dir, expected, rng = _killed_import(tmp_path, crypt=0)
    _check(data_dir, expected, sealed=False)
    subprocess.run(_cli(data_dir, "user", "crypt", EMAIL, "2"), check=True, capture_output=True)
    command = _cli(data_dir, "mailbox", "encrypt", EMAIL)
    kills = _killed_runs(command, b"", rng, 5)
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    print(f"encrypt killed {kills} times")
    _check(data_dir, expected, sealed=True)
    report = store_check(data_dir, grace_s=0)
    assert report.returncode == 0, report.stdout + report.stderr


def test_a_killed_sealed_import_leaves_each_message_and_its_sort_entry_once(
    tmp_path: Path,
) -> None:
    data_dir, expected, _rng = _killed_import(tmp_path, crypt=2)
    _check(data_dir, expected, sealed=True)
    count, pairs = _entries(data_dir)
    assert count == COUNT == len(pairs)  # one each: none missing, none left of a killed batch
    assert all(opened == slow for opened, slow in pairs)
    report = store_check(data_dir, grace_s=0)
    assert report.returncode == 0, report.stdout + report.stderr
