# mypy: disable-error-code="index, union-attr, arg-type"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""Imported mail and the background pass, with the real Dovecot 2.3 as the oracle
(issue 16): a Dovecot that got its mail over LMTP (a mail-crypt user and a plain one)
answers SORT, THREAD and FETCH ENVELOPE; its Maildirs go through `cryptmail import
maildir` (a subprocess, passwords on stdin); the user's sessions on our server only log
in, the background pass seals every imported message's analysis, and then, with every
blob deleted, two sessions of each user (one IMAP4rev1, one IMAP4rev2) get Dovecot's
answers from the caches alone. Before issue 16 the import wrote caches the pass
skipped, and each of these commands read every message."""

from __future__ import annotations

import imaplib
import shutil
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cryptmail import store
from cryptmail.db import tables as t
from cryptmail.keys import unlock_account
from cryptmail.secret import Password
from imap.server_rig import PASSWORD, USER, ImapRig, start_rig

from .servers.dovecot import Dovecot, DovecotFactory, DovecotUser, dovecot_instances

pytestmark = pytest.mark.integration

KEY_PASSWORD = "Dovecot-Key-Pass-16"
PLAIN_USER = "bob@example.org"
COMMANDS = (
    ("UID", "SORT", "(SUBJECT)", "UTF-8", "ALL"),
    ("UID", "SORT", "(REVERSE FROM DATE)", "UTF-8", "ALL"),
    ("UID", "THREAD", "REFERENCES", "UTF-8", "ALL"),
    ("UID", "FETCH", "1:*", "(ENVELOPE)"),
)
Answers = list[list[bytes]]


@pytest.fixture
def dovecot_factory() -> Iterator[DovecotFactory]:
    with dovecot_instances() as factory:
        yield factory


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path / "ours", **{"imap.fts_background_percent": 100})


def _dovecot(factory: DovecotFactory) -> Dovecot:
    crypt_user = DovecotUser(
        "alice",
        "login-alice",
        {
            "mail_crypt_save_version": "2",
            "mail_crypt_curve": "prime256v1",
            "mail_crypt_require_encrypted_user_key": "yes",
            "mail_crypt_private_password": KEY_PASSWORD,
        },
    )
    plain_user = DovecotUser("bob", "login-bob", {"mail_crypt_save_version": "0"})
    return factory(
        users=[crypt_user, plain_user],
        mail_plugins=["mail_crypt"],
        plugin_settings={"mail_crypt_save_version": "0"},
        imap=True,
        lmtp=True,
    )


def _message(number: int) -> bytes:
    """Subjects that sort on their base subject, senders and dates out of arrival order,
    and a thread by References."""
    subjects = ["Re: Plans", "=?utf-8?q?=C3=84pfel?=", "Fwd: Budget", "plans", "Budget"]
    parent = f"References: <m{number - 1}@example.net>\r\n" if number % 3 else ""
    return (
        f"From: Sender {(number * 7) % 5} <s{number}@example.net>\r\n"
        f"To: someone@example.org\r\nSubject: {subjects[number % len(subjects)]}\r\n"
        f"Date: Tue, {10 + (number * 3) % 9} Nov 2026 08:00:00 +0000\r\n"
        f"Message-ID: <m{number}@example.net>\r\n{parent}\r\nbody {number}\r\n"
    ).encode()


def _answers(imap: imaplib.IMAP4) -> Answers:
    assert imap.select("INBOX", readonly=True)[0] == "OK"
    out = []
    for command in COMMANDS:
        typ, data = imap._simple_command(*command)
        assert typ == "OK", (command, data)
        name = command[1]
        _, lines = imap._untagged_response(typ, data, name)
        out.append(sorted(line if isinstance(line, bytes) else line[0] for line in lines))
    imap.close()
    return out


def _analysed(rig: ImapRig, email: str) -> tuple[int, int]:
    """(rows, rows whose sealed cache holds the analysis) of the user."""

    async def work() -> tuple[int, int]:
        account, _ = await unlock_account(
            rig.engine, email, Password.from_str(PASSWORD), rig.config.crypto
        )
        m, b = t.cm_messages, t.cm_mailboxes
        async with rig.engine.connect() as conn:
            ids = [
                store.MessageId(int(i))
                for i in (
                    await conn.execute(
                        select(m.c.id)
                        .select_from(m.join(b, m.c.mailbox_id == b.c.id))
                        .where(b.c.user_id == account.user.id)
                    )
                ).scalars()
            ]
            caches = await store.load_caches(conn, account, ids)
        return len(ids), sum(1 for cache in caches.values() if cache.extra)

    return rig.run(work())


def _unlink_blobs(rig: ImapRig) -> int:
    async def work() -> list[bytes]:
        async with rig.engine.connect() as conn:
            return [bytes(r[0]) for r in await conn.execute(select(t.cm_messages.c.blob_id))]

    blob_ids = rig.run(work())
    for blob_id in blob_ids:
        rig.blobs.path_of(store.BlobId(blob_id)).unlink()
    return len(blob_ids)


def _import(rig: ImapRig, user: str, maildir: Path, stdin: str) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "cryptmail", "--data-dir", str(rig.config.data_path),
            "import", "maildir", user, str(maildir), "--password-stdin",
            *(["--dovecot-password-stdin"] if stdin.count("\n") > 1 else []),
        ],
        input=stdin.encode(), capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()


def _login(rig: ImapRig, user: str, rev2: bool) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(user, PASSWORD)
    if rev2:
        assert imap._simple_command("ENABLE", "IMAP4rev2")[0] == "OK"
    return imap


def test_imported_mail_is_analysed_by_the_pass_and_answers_as_dovecot(
    dovecot_factory: DovecotFactory, rig: ImapRig, tmp_path: Path
) -> None:
    server = _dovecot(dovecot_factory)
    assert server.lmtp_port is not None and server.imap_port is not None
    with smtplib.LMTP(server.host, server.lmtp_port) as lmtp:
        for number in range(1, 13):
            for user in ("alice", "bob"):  # smtplib reads one LMTP reply per message
                lmtp.sendmail("sender@example.net", [user], _message(number))
    theirs = {}
    for user in ("alice", "bob"):
        imap = imaplib.IMAP4(server.host, server.imap_port)
        imap.login(user, f"login-{user}")
        theirs[user] = _answers(imap)
        imap.logout()
        shutil.copytree(server.home(user) / "Maildir", tmp_path / f"{user}-Maildir")
    assert len(theirs["alice"][3]) == 12

    rig.add_user(PLAIN_USER, PASSWORD, crypt=0)
    _import(rig, USER, tmp_path / "alice-Maildir", f"{PASSWORD}\n{KEY_PASSWORD}\n")
    _import(rig, PLAIN_USER, tmp_path / "bob-Maildir", f"{PASSWORD}\n")
    for email in (USER, PLAIN_USER):
        assert _analysed(rig, email) == (12, 0)
    # Sessions that only log in: the pass does the rest.
    sessions = {email: [_login(rig, email, rev2) for rev2 in (False, True)]
                for email in (USER, PLAIN_USER)}  # fmt: skip
    deadline = time.monotonic() + 120
    while any(_analysed(rig, email) != (12, 12) for email in sessions):
        assert time.monotonic() < deadline, "the pass left imported mail unanalysed"
        time.sleep(0.1)
    assert _unlink_blobs(rig) == 24  # from now on a read of a message would fail
    for email, user in ((USER, "alice"), (PLAIN_USER, "bob")):
        for imap in sessions[email]:
            assert _answers(imap) == theirs[user]
            imap.logout()
