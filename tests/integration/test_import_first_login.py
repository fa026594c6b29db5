# mypy: disable-error-code="index, union-attr, arg-type, attr-defined"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""A Maildir made by the real Dovecot 2.3 (alice: mail-crypt per-user keys locked by a
password, as on an ISPmail server where it is the login password) staged with
`import maildir --at-first-login`, then imported by a live `cryptmail serve` at the
user's first login: killed (SIGKILL, at the first batch's commit) in the middle,
resumed at a later login, two clients logging in at once from one address, mail
delivered over LMTP before and between; at the end every message of the Maildir is
there once, byte-exact with Dovecot's UID and UIDVALIDITY, the delivered ones above
them, and POP3 gives Dovecot's UIDLs.
"""

from __future__ import annotations

import asyncio
import imaplib
import json
import poplib
import re
import shutil
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cryptmail.crypto.dovecot import parse_uidlist
from cryptmail.db import create_engine
from cryptmail.keys import create_user
from cryptmail.secret import Password
from cryptmail.store import StagedImport, list_staged

from .cryptmail_server import CRYPTO, CryptmailServer, db_url, make_users

pytestmark = pytest.mark.integration

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dovecot-2.3"
EMAIL = "alice@example.org"
SECRET = "Alice-Secret-521"  # Dovecot's key password is alice's login password
CONFIG = "[auth]\nimport_stale_s = 1\n[crypto.argon2]\nmemory_kib = 19456\n"
FOLDERS = {"INBOX": "", "Archive": ".Archive"}


def _expected(maildir: Path) -> dict[str, tuple[int, dict[int, bytes]]]:
    """folder -> (UIDVALIDITY, UID -> bytes as Dovecot's IMAP serves them)."""
    by_file = {e["file"]: e for e in json.loads((VECTORS / "vectors.json").read_text())}
    out: dict[str, tuple[int, dict[int, bytes]]] = {}
    for name, sub in FOLDERS.items():
        vector_dir = VECTORS / "maildirs" / "alice" / "Maildir" / sub
        uidlist = parse_uidlist((maildir / sub / "dovecot-uidlist").read_bytes())
        messages = {}
        for path in sorted((vector_dir / "new").iterdir()):
            plain = (
                VECTORS / by_file[path.relative_to(VECTORS).as_posix()]["plaintext"]
            ).read_bytes()
            record = uidlist.find(path.name)
            assert record is not None
            messages[record.uid] = plain.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        out[name] = (uidlist.uid_validity, messages)
    return out


def _cli(data_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryptmail", "--data-dir", str(data_dir), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _staged(data_dir: Path) -> list[StagedImport]:
    async def run() -> list[StagedImport]:
        engine = create_engine(db_url(data_dir))
        try:
            return await list_staged(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _deliver(server: CryptmailServer, subject: str) -> bytes:
    message = f"From: a@example.net\r\nTo: {EMAIL}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
    with smtplib.LMTP("127.0.0.1", server.port) as lmtp:
        lmtp.sendmail("a@example.net", [EMAIL], message)
    return message


def _login(port: int) -> list[bytes]:
    """Log in over IMAP; the untagged lines of the login (its ALERTs)."""
    client = imaplib.IMAP4("127.0.0.1", port)
    try:
        typ, _ = client.login(EMAIL, SECRET)
        assert typ == "OK"
        return [bytes(line) for line in client.untagged_responses.get("OK", [])]
    finally:
        client.logout()


def _wait_done(data_dir: Path, timeout: float = 120.0) -> StagedImport:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (row,) = _staged(data_dir)
        if row.state in ("done", "failed"):
            return row
        time.sleep(0.2)
    raise AssertionError(f"the import did not end: {_staged(data_dir)}")


def _mailbox(client: imaplib.IMAP4, name: str) -> tuple[int, dict[int, bytes]]:
    typ, _ = client.select(name, readonly=True)
    assert typ == "OK", name
    uidvalidity = int(client.untagged_responses["UIDVALIDITY"][0])
    typ, data = client.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
    assert typ == "OK"
    found: dict[int, bytes] = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0])[1])
            assert uid not in found
            found[uid] = item[1]
    return uidvalidity, found


def test_staged_import_runs_at_first_login_survives_a_kill_and_keeps_uids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    maildir = tmp_path / "Maildir"
    shutil.copytree(VECTORS / "maildirs" / "alice" / "Maildir", maildir)
    make_users(data_dir, "example.org", {})

    async def add_alice() -> None:
        engine = create_engine(db_url(data_dir))
        await create_user(engine, EMAIL, Password.from_str(SECRET), CRYPTO, crypt=2)
        await engine.dispose()

    asyncio.run(add_alice())
    expected = _expected(maildir)
    total = sum(len(m) for _, m in expected.values())

    staged = _cli(data_dir, "import", "maildir", EMAIL, str(maildir), "--at-first-login")
    assert staged.returncode == 0, staged.stderr
    again = _cli(data_dir, "import", "maildir", EMAIL, str(maildir), "--at-first-login")
    assert again.returncode != 0 and "staged or running already" in again.stderr
    status = _cli(data_dir, "import", "status")
    assert status.returncode == 0, status.stderr
    assert f"{EMAIL}\tstaged\t0/{total}" in status.stdout
    assert "Archive" not in status.stdout and str(maildir) not in status.stdout

    # The server kills itself at the first batch's commit (the INBOX), as a power cut.
    monkeypatch.setenv("CRYPTMAIL_CRASH_AT", "import:after-commit")
    server = CryptmailServer(data_dir, imap=True, pop3=True, config=CONFIG)
    server.start()
    try:
        before = _deliver(server, "before the login")  # takes a UID above Dovecot's
        try:
            _login(server.imap_port)
        except (OSError, imaplib.IMAP4.abort):
            pass  # the kill may come before the login's answer
        assert server.process is not None
        server.process.wait(60)
    finally:
        server.kill()
    (row,) = _staged(data_dir)
    assert row.state == "running"  # left by the dead process

    monkeypatch.delenv("CRYPTMAIL_CRASH_AT")
    server = CryptmailServer(data_dir, imap=True, pop3=True, config=CONFIG)
    server.start()
    try:
        between = _deliver(server, "between the kill and the next login")
        time.sleep(1.5)  # the dead process's heartbeat is stale after import_stale_s
        alerts: list[list[bytes]] = []
        errors: list[BaseException] = []

        def one() -> None:
            try:
                alerts.append(_login(server.imap_port))
            except BaseException as exc:  # reported below
                errors.append(exc)

        clients = [threading.Thread(target=one) for _ in range(2)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(60)
        assert not errors, errors
        assert any(b"old mail is being imported" in line for got in alerts for line in got)
        row = _wait_done(data_dir)
        assert (row.state, row.done_messages, row.total_messages) == ("done", total, total)
        log = server.log_path.read_text()
        assert log.count(f"import #{row.id} of user id") >= 1
        assert log.count("done:") == 1, "two logins started two imports"
        assert log.count("its process died; resuming it") == 1

        client = imaplib.IMAP4("127.0.0.1", server.imap_port)
        client.login(EMAIL, SECRET)
        try:
            for name, (uidvalidity, messages) in expected.items():
                got_validity, got = _mailbox(client, name)
                assert got_validity == uidvalidity, name
                imported = {uid: data for uid, data in got.items() if uid in messages}
                assert imported == messages, name
                extra = sorted(set(got) - set(messages))
                if name == "INBOX":
                    assert len(extra) == 2
                    assert all(
                        got[uid].endswith(m)
                        for uid, m in zip(extra, [before, between], strict=True)
                    )
                    assert min(extra) > max(messages)
                else:
                    assert extra == []
        finally:
            client.logout()

        pop = poplib.POP3("127.0.0.1", server.pop3_port)
        try:
            pop.user(EMAIL)
            pop.pass_(SECRET)
            _, lines, _ = pop.uidl()
            uidls = {line.split()[1].decode() for line in lines}
        finally:
            pop.quit()
        uidvalidity, messages = expected["INBOX"]
        assert {f"{uid:08X}{uidvalidity:08X}" for uid in messages} <= uidls
        status = _cli(data_dir, "import", "status", EMAIL)
        assert f"{EMAIL}\tdone\t{total}/{total}" in status.stdout, status.stdout
    finally:
        server.stop()


def test_global_key_mail_sealed_by_the_admin_is_placed_at_a_pop3_login(tmp_path: Path) -> None:
    """frank's Maildir (Dovecot's global RSA key, its PEM encrypted): the admin's
    command seals it to frank's public key without frank's password; the Maildir goes;
    frank's first POP3 login places it, with Dovecot's UIDLs."""
    data_dir = tmp_path / "data"
    maildir = tmp_path / "Maildir"
    shutil.copytree(VECTORS / "maildirs" / "frank" / "Maildir", maildir)
    email, secret = "frank@example.org", "frank's own login password"
    make_users(data_dir, "example.org", {})

    async def add_frank() -> None:
        engine = create_engine(db_url(data_dir))
        await create_user(engine, email, Password.from_str(secret), CRYPTO, crypt=2)
        await engine.dispose()

    asyncio.run(add_frank())
    uidlist = parse_uidlist((maildir / "dovecot-uidlist").read_bytes())
    by_file = {e["file"]: e for e in json.loads((VECTORS / "vectors.json").read_text())}
    expected: dict[str, bytes] = {}
    for path in (VECTORS / "maildirs" / "frank" / "Maildir" / "new").iterdir():
        plain = (VECTORS / by_file[path.relative_to(VECTORS).as_posix()]["plaintext"]).read_bytes()
        record = uidlist.find(path.name)
        assert record is not None
        expected[f"{record.uid:08X}{uidlist.uid_validity:08X}"] = plain.replace(
            b"\r\n", b"\n"
        ).replace(b"\n", b"\r\n")

    key = VECTORS / "keys" / "frank-global-rsa2048-priv-encrypted.pem"
    sealed = subprocess.run(
        [sys.executable, "-m", "cryptmail", "--data-dir", str(data_dir), "import", "maildir"]
        + [email, str(maildir), "--at-first-login", "--dovecot-private-key", str(key)]
        + ["--password-stdin"],
        input="frank-global-pw\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert sealed.returncode == 0, sealed.stderr
    assert "no longer needed" in sealed.stderr
    shutil.rmtree(maildir)
    (row,) = _staged(data_dir)
    assert (row.state, row.total_messages) == ("staged", len(expected))

    server = CryptmailServer(data_dir, pop3=True, config=CONFIG)
    server.start()
    try:
        pop = poplib.POP3("127.0.0.1", server.pop3_port)
        pop.user(email)
        pop.pass_(secret)
        pop.quit()
        row = _wait_done(data_dir)
        assert (row.state, row.done_messages) == ("done", len(expected))
        pop = poplib.POP3("127.0.0.1", server.pop3_port)
        try:
            pop.user(email)
            pop.pass_(secret)
            _, lines, _ = pop.uidl()
            got: dict[str, bytes] = {}
            for entry in lines:
                number, name = entry.split()
                _, body, _ = pop.retr(int(number))
                got[name.decode()] = b"".join(piece + b"\r\n" for piece in body)
        finally:
            pop.quit()
        assert set(got) == set(expected)
        for wanted, data in expected.items():
            # poplib strips each line's CRLF; POP3 ends a message without one in CRLF.
            whole = data if data.endswith(b"\r\n") or not data else data + b"\r\n"
            assert got[wanted] == whole, wanted
    finally:
        server.stop()


def test_pop3_uidls_are_dovecots_after_the_password_import(tmp_path: Path) -> None:
    """The other import path (`import maildir` with the user's password): POP3 gives
    every imported message the UIDL Dovecot gave it (`%08Xu%08Xv`), in every session."""
    data_dir = tmp_path / "data"
    maildir = tmp_path / "Maildir"
    shutil.copytree(VECTORS / "maildirs" / "alice" / "Maildir", maildir)
    make_users(data_dir, "example.org", {})

    async def add_alice() -> None:
        engine = create_engine(db_url(data_dir))
        await create_user(engine, EMAIL, Password.from_str(SECRET), CRYPTO, crypt=2)
        await engine.dispose()

    asyncio.run(add_alice())
    done = subprocess.run(
        [sys.executable, "-m", "cryptmail", "--data-dir", str(data_dir), "import", "maildir"]
        + [EMAIL, str(maildir), "--password-stdin"],
        input=SECRET + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    uidvalidity, messages = _expected(maildir)["INBOX"]
    wanted = {f"{uid:08X}{uidvalidity:08X}": data for uid, data in messages.items()}
    server = CryptmailServer(data_dir, pop3=True, config=CONFIG)
    server.start()
    try:
        for _ in range(2):
            pop = poplib.POP3("127.0.0.1", server.pop3_port)
            try:
                pop.user(EMAIL)
                pop.pass_(SECRET)
                _, lines, _ = pop.uidl()
                got: dict[str, bytes] = {}
                for entry in lines:
                    number, name = entry.split()
                    _, body, _ = pop.retr(int(number))
                    got[name.decode()] = b"".join(piece + b"\r\n" for piece in body)
            finally:
                pop.quit()
            assert set(got) == set(wanted)
            for uidl, data in wanted.items():
                whole = data if data.endswith(b"\r\n") or not data else data + b"\r\n"
                assert got[uidl] == whole, uidl
    finally:
        server.stop()
