# mypy: disable-error-code="index, union-attr, arg-type, attr-defined"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""Maildirs made by the real Dovecot 2.3, imported, then read through our IMAP server.

Dovecot receives mail over LMTP (one user with mail-crypt per-user keys, secp521r1, the
key password from userdb; one without), folders are made over IMAP (nested, one with a
non-ASCII name), flags and keywords set over IMAP. Then `cryptmail import maildir`
runs (a subprocess, passwords on stdin) and what our IMAP server shows is compared with
what Dovecot's showed: folder tree, UIDVALIDITY, UIDNEXT, UIDs, flags, keywords,
INTERNALDATE and the bytes.
"""

from __future__ import annotations

import imaplib
import re
import shutil
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from imap.server_rig import PASSWORD, USER, ImapRig, start_rig

from .servers.dovecot import Dovecot, DovecotFactory, DovecotUser, dovecot_instances

pytestmark = pytest.mark.integration

KEY_PASSWORD = "Dovecot-Key-Sécret-1"
PLAIN_USER = "bob@example.org"
PLAIN_PASSWORD = "b%b 'plain' \"pw\" ü"
# name on the wire (Dovecot's "." separator, modified UTF-7) -> our name
FOLDERS = {"Work": "Work", "Work.Caf&AOk-": "Work/Café", "Sent": "Sent"}
Snapshot = dict[str, tuple[int, int, list[tuple[int, frozenset[str], datetime, bytes]]]]


@pytest.fixture
def dovecot_factory() -> Iterator[DovecotFactory]:
    with dovecot_instances() as factory:
        yield factory


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _dovecot(factory: DovecotFactory) -> Dovecot:
    crypt_user = DovecotUser(
        "alice",
        "login-alice",
        {
            "mail_crypt_save_version": "2",
            "mail_crypt_curve": "secp521r1",
            "mail_crypt_require_encrypted_user_key": "yes",
            "mail_crypt_private_password": KEY_PASSWORD,
        },
    )
    plain_user = DovecotUser("bob", "login-bob", {"mail_crypt_save_version": "0"})
    return factory(
        users=[crypt_user, plain_user],
        mail_plugins=["mail_crypt"],
        # LMTP's raw user needs a value; each user's userdb field overrides it.
        plugin_settings={"mail_crypt_save_version": "0"},
        imap=True,
        lmtp=True,
    )


def _message(number: int, line_end: bytes = b"\r\n") -> bytes:
    lines = [
        b"From: sender@example.net",
        b"To: alice@example.org",
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= %d" % number,
        b"",
        "body %d: grüße, こんにちは".encode() % number,
        b"x" * (number * 500),
        b"",
    ]
    return line_end.join(lines)


def _fill(server: Dovecot, user: str, login: str) -> None:
    assert server.lmtp_port is not None and server.imap_port is not None
    with smtplib.LMTP(server.host, server.lmtp_port) as lmtp:
        for number in range(1, 5):
            lmtp.sendmail("sender@example.net", [user], _message(number))
    imap = imaplib.IMAP4(server.host, server.imap_port)
    imap.login(user, login)
    for wire in FOLDERS:
        if wire != "Sent":
            assert imap.create(wire)[0] == "OK"
    imap.create("Sent")
    # Bare LF and CRLF messages, with flags, keywords and a date of their own.
    date = imaplib.Time2Internaldate(1_600_000_000)
    assert imap.append("Work.Caf&AOk-", r"(\Seen $Label1)", date, _message(5, b"\n"))[0] == "OK"
    assert imap.append("Work.Caf&AOk-", r"(\Draft)", date, _message(6))[0] == "OK"
    assert imap.append("Sent", r"(\Seen)", date, _message(7))[0] == "OK"
    imap.select("INBOX")
    assert imap.uid("STORE", "1", "+FLAGS", r"(\Seen \Flagged project)")[0] == "OK"
    assert imap.uid("STORE", "2", "+FLAGS", r"(\Answered \Deleted)")[0] == "OK"
    assert imap.uid("STORE", "3", "+FLAGS", "(todo $Forwarded)")[0] == "OK"
    imap.logout()


def _snapshot(imap: imaplib.IMAP4, folders: dict[str, str]) -> Snapshot:
    out: Snapshot = {}
    for wire, name in folders.items():
        typ, status = imap.status(_quote(wire), "(UIDVALIDITY UIDNEXT)")
        assert typ == "OK", (wire, status)
        validity = int(re.search(rb"UIDVALIDITY (\d+)", status[0])[1])
        uidnext = int(re.search(rb"UIDNEXT (\d+)", status[0])[1])
        assert imap.select(_quote(wire), readonly=True)[0] == "OK"
        typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
        assert typ == "OK"
        messages = []
        pending: list[tuple[bytes, bytes]] = []
        for item in data:
            if isinstance(item, tuple):
                pending.append((item[0], item[1]))
            elif item and pending:
                meta, body = pending[-1]
                pending[-1] = (meta + item, body)
        for meta, body in pending:
            flags = frozenset(re.search(rb"FLAGS \(([^)]*)\)", meta)[1].decode().split())
            date = re.search(rb'INTERNALDATE "([^"]+)"', meta)[1].decode()
            messages.append(
                (
                    int(re.search(rb"UID (\d+)", meta)[1]),
                    flags - {"\\Recent"},
                    datetime.strptime(date.strip(), "%d-%b-%Y %H:%M:%S %z"),
                    body,
                )
            )
        out[name] = (validity, uidnext, sorted(messages))
        imap.close()
    return out


def _quote(name: str) -> str:
    return '"' + name + '"'


def _import(rig: ImapRig, user: str, maildir: Path, stdin: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptmail",
            "--data-dir",
            str(rig.config.data_path),
            "import",
            "maildir",
            user,
            str(maildir),
            "--password-stdin",
            *(["--dovecot-password-stdin"] if stdin.count("\n") > 1 else []),
        ],
        input=stdin.encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stderr.decode()


def _ours(rig: ImapRig, user: str, password: str, folders: dict[str, str]) -> Snapshot:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap._encoding = "utf-8"  # a UTF-8 password in a quoted string
    imap.login(user, password)
    typ, listing = imap.list()
    assert typ == "OK"
    from cryptmail.imap import encode_mailbox_name as encode_utf7

    names = {line.decode().rsplit(' "/" ', 1)[1].strip('"') for line in listing}
    wire = {encode_utf7(name): name for name in folders.values()}
    assert set(wire) <= names, (names, wire)
    snapshot = _snapshot(imap, wire)
    imap.logout()
    return snapshot


async def _set_quota(rig: ImapRig, email: str, quota: int) -> None:
    from cryptmail.users import get_user, set_quota

    async with rig.engine.begin() as conn:
        await set_quota(conn, (await get_user(conn, email)).id, quota)


def test_dovecot_maildirs_import_as_dovecot_served_them(
    dovecot_factory: DovecotFactory, rig: ImapRig, tmp_path: Path
) -> None:
    server = _dovecot(dovecot_factory)
    _fill(server, "alice", "login-alice")
    _fill(server, "bob", "login-bob")
    assert server.imap_port is not None
    theirs: dict[str, Snapshot] = {}
    for user in ("alice", "bob"):
        imap = imaplib.IMAP4(server.host, server.imap_port)
        imap.login(user, f"login-{user}")
        theirs[user] = _snapshot(imap, {"INBOX": "INBOX", **FOLDERS})
        imap.logout()
    inbox = theirs["alice"]["INBOX"][2]
    assert [uid for uid, *_ in inbox] == [1, 2, 3, 4]
    assert inbox[0][1] == {"\\Seen", "\\Flagged", "project"}
    assert inbox[2][1] == {"todo", "$Forwarded"}
    assert [len(theirs["alice"][name][2]) for name in FOLDERS.values()] == [0, 2, 1]
    # The mail-crypt user's files are encrypted, the other's are not.
    alice_dir = tmp_path / "alice-Maildir"
    bob_dir = tmp_path / "bob-Maildir"
    shutil.copytree(server.home("alice") / "Maildir", alice_dir)
    shutil.copytree(server.home("bob") / "Maildir", bob_dir)
    alice_files = [p for p in alice_dir.rglob("*") if p.parent.name in ("cur", "new")]
    assert len(alice_files) == 7
    assert all(p.read_bytes().startswith(b"CRYPTED") for p in alice_files)
    assert not any(p.read_bytes().startswith(b"CRYPTED") for p in bob_dir.rglob("*") if p.is_file())

    rig.add_user(PLAIN_USER, PLAIN_PASSWORD, crypt=0)
    report = _import(rig, USER, alice_dir, f"{PASSWORD}\n{KEY_PASSWORD}\n")
    assert "7 message(s) imported" in report
    assert f"import {USER}: 7/7 messages (100%)" in report  # plain progress lines
    rig.run(_set_quota(rig, PLAIN_USER, 1000))
    report = _import(rig, PLAIN_USER, bob_dir, f"{PLAIN_PASSWORD}\n")
    # An admin import is not refused for quota, only reported.
    assert "7 message(s) imported" in report
    assert "over the quota of 1000" in report
    rig.run(_set_quota(rig, PLAIN_USER, 0))

    wanted = {"INBOX": "INBOX", **FOLDERS}
    assert _ours(rig, USER, PASSWORD, wanted) == theirs["alice"]
    assert _ours(rig, PLAIN_USER, PLAIN_PASSWORD, wanted) == theirs["bob"]
    # Again: nothing new, nothing changed.
    report = _import(rig, USER, alice_dir, f"{PASSWORD}\n{KEY_PASSWORD}\n")
    assert "0 message(s) imported" in report and "7 already there" in report
    assert _ours(rig, USER, PASSWORD, wanted) == theirs["alice"]
