"""`cryptmail mailbox export`: the real Dovecot 2.3 serves the exported Maildir as we did.

Mail goes into our server over IMAP (nested folder with a non-ASCII name, flags,
keywords, dates of their own, `From ` lines in bodies, one expunged UID), then `mailbox
export --format maildir` writes it, Dovecot (its own config) serves that Maildir, and
every folder, UIDVALIDITY, UIDNEXT, UID, flag, keyword, internal date, message byte and
subscription must match what our IMAP server serves. mbox export is read back with
Python's `mailbox` module.
"""

from __future__ import annotations

import imaplib
import mailbox
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from imap.server_rig import PASSWORD, USER, ImapRig, start_rig

from .servers.dovecot import DovecotFactory, DovecotUser, dovecot_instances
from .test_import_dovecot import FOLDERS, _ours, _quote, _snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
def dovecot_factory() -> Iterator[DovecotFactory]:
    with dovecot_instances() as factory:
        yield factory


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _message(number: int) -> bytes:
    lines = [
        b"From: sender@example.net",
        b"To: alice@example.org",
        b"Subject: export %d" % number,
        b"",
        b"From the start of a line, %d" % number,
        b">From quoted already",
        "grüße, こんにちは".encode(),
        b"y" * (number * 700),
        b"",
    ]
    return b"\r\n".join(lines)


def _fill(rig: ImapRig) -> None:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(USER, PASSWORD)
    for name in ("Work", "Work/Caf&AOk-"):
        assert imap.create(_quote(name))[0] == "OK"
    imap.subscribe(_quote("Work/Caf&AOk-"))
    date = imaplib.Time2Internaldate(1_600_000_000)
    later = imaplib.Time2Internaldate(1_650_000_123)
    appends = [
        ("INBOX", r"(\Seen \Flagged project)", date, 1),
        ("INBOX", r"(\Answered)", later, 2),
        ("INBOX", r"(todo $Forwarded)", date, 3),
        ("INBOX", r"()", later, 4),
        ("INBOX", r"(\Seen)", later, 5),
        ("Work/Caf&AOk-", r"(\Seen $Label1)", date, 6),
        ("Work/Caf&AOk-", r"(\Draft)", later, 7),
        ("Sent", r"(\Seen)", date, 8),
    ]
    for folder, flags, when, number in appends:
        assert imap.append(_quote(folder), flags, when, _message(number))[0] == "OK"
    # A gap in the UIDs: Dovecot must keep UID 5 unused and UIDNEXT past it.
    imap.select("INBOX")
    imap.uid("STORE", "4", "+FLAGS", r"(\Deleted)")
    imap.expunge()
    imap.logout()


def _export(rig: ImapRig, out: Path, form: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptmail",
            "--data-dir",
            str(rig.config.data_path),
            "mailbox",
            "export",
            USER,
            str(out),
            "--format",
            form,
            "--password-stdin",
        ],
        input=f"{PASSWORD}\n".encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stderr.decode()


def _lsub(imap: imaplib.IMAP4) -> set[str]:
    typ, data = imap.lsub()
    assert typ == "OK"
    return {
        re.sub(r"^.* \"[./]\" ", "", line.decode()).strip('"')
        for line in data
        if isinstance(line, bytes)
    }


def test_maildir_export_is_served_by_dovecot_as_we_served_it(
    dovecot_factory: DovecotFactory, rig: ImapRig, tmp_path: Path
) -> None:
    _fill(rig)
    wanted = {"INBOX": "INBOX", **FOLDERS}
    ours = _ours(rig, USER, PASSWORD, wanted)
    inbox = ours["INBOX"][2]
    assert [uid for uid, *_ in inbox] == [1, 2, 3, 5]
    assert inbox[2][1] == {"todo", "$Forwarded"}

    out = tmp_path / "export"
    report = _export(rig, out, "maildir")
    assert "exported 7 message(s)" in report
    # Not a terminal: plain progress lines, the last one with the whole count.
    assert "export alice@example.org: 7/7 messages (100%)" in report
    # Everything came through tmp/ and is now in cur/; no temporary index files remain.
    assert not [p for p in out.rglob("tmp/*")] and not list(out.rglob("*.tmp"))
    keywords = (out / "dovecot-keywords").read_text().split("\n")
    assert keywords[:3] == ["0 $Forwarded", "1 project", "2 todo"]
    assert (out / ".Work.Caf&AOk-" / "maildirfolder").exists()

    server = dovecot_factory(users=[DovecotUser("alice", "login-alice", {})], imap=True)
    assert server.imap_port is not None
    target = server.home("alice") / "Maildir"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(out, target)
    server.give_to_mail_user(server.home("alice"))

    imap = imaplib.IMAP4(server.host, server.imap_port)
    imap.login("alice", "login-alice")
    theirs = _snapshot(imap, {"INBOX": "INBOX", **FOLDERS})
    assert "Work.Caf&AOk-" in _lsub(imap)
    imap.logout()
    assert theirs == ours


def test_mbox_export_reads_back_with_mboxrd_quoting(rig: ImapRig, tmp_path: Path) -> None:
    _fill(rig)
    ours = _ours(rig, USER, PASSWORD, {"INBOX": "INBOX", **FOLDERS})
    out = tmp_path / "mbox"
    assert "exported 7 message(s)" in _export(rig, out, "mbox")
    assert {"INBOX", "Sent", "Work", "Work.Café"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.tmp"))
    raw = (out / "INBOX").read_bytes()
    # mboxrd: every body line starting with `>*From ` got one more `>`.
    assert b"\n>From the start of a line, 1\r\n>>From quoted already" in raw
    for path, name in [(out / "INBOX", "INBOX"), (out / "Work.Café", "Work/Café")]:
        box = mailbox.mbox(path)
        # Undo mboxrd: one `>` off every `>+From ` line, as a mboxrd reader does.
        got = [re.sub(rb"(?m)^>(>*From )", rb"\1", box.get_bytes(key)) for key in box.keys()]
        box.close()
        served = [body for _uid, _flags, _date, body in ours[name][2]]
        # The mailbox module drops the LF that separates one message from the next.
        assert got == served
