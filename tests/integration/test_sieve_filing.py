"""Sieve's fileinto into the user's own folders, and imap4flags, end to end on a live
`cryptmail serve`: real LMTP in, imaplib, IMAPClient (IDLE) and poplib out.

- Delivery files nothing it cannot see: the copies wait in the hidden holding mailbox
  with a sealed note; no note shows a folder name or a flag in the database.
- Several sessions of several users log in at once (IMAP and POP3, one client address)
  while deliveries keep arriving: every message lands exactly once, in the right folder
  with the right flags; POP3 never lists one bound for a folder; an IDLE session in the
  target folder sees the messages arrive.
- A real SIGKILL of the server in the middle of filing (inside the transaction) loses
  nothing and files nothing twice.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import smtplib
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from imapclient import IMAPClient

from .cryptmail_server import PASSWORD, CryptmailServer, make_users, store_check

pytestmark = pytest.mark.integration

USERS = {"ann@example.org": 2, "ben@example.org": 2, "cid@example.org": 0}
FOLDER = "Projects/2026"
SCRIPT = (
    'require ["fileinto", "mailbox", "imap4flags"];\n'
    'if header :contains "subject" "proj" {\n'
    '  fileinto :create :flags ["\\\\Flagged", "$Work"] "Projects/2026";\n'
    "  stop;\n"
    "}\n"
    'if header :contains "subject" "seen" { addflag "\\\\Seen"; }\n'
)
KINDS = ("proj", "seen", "plain")


def _config(tmp_path: Path) -> str:
    (tmp_path / "before.sieve").write_text(SCRIPT)
    return f'[sieve]\nbefore = "{tmp_path}/before.sieve"\n'


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    make_users(data, "example.org", USERS)
    return data


@pytest.fixture
def server(tmp_path: Path, data_dir: Path) -> Iterator[CryptmailServer]:
    served = CryptmailServer(data_dir, config=_config(tmp_path), imap=True, pop3=True)
    served.start(timeout=120)
    yield served
    served.stop()


def _send(port: int, to: str, subject: str) -> None:
    message = (
        f"From: a@example.net\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}.{to}>\r\n\r\nbody of {subject}\r\n"
    ).encode()
    with smtplib.LMTP("127.0.0.1", port) as lmtp:
        lmtp.sendmail("a@example.net", [to], message)


def _db(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{data_dir / 'cryptmail.db'}?mode=ro", uri=True, timeout=30)


def _waiting(data_dir: Path, user: str | None = None) -> dict[str, int]:
    """Messages per role (own: the user's own folders) of `user` or everyone, from SQL."""
    with _db(data_dir) as db:
        rows = db.execute(
            "SELECT COALESCE(b.role, 'own'), COUNT(*) FROM cm_messages m "
            "JOIN cm_mailboxes b ON b.id = m.mailbox_id "
            "JOIN virtual_users u ON u.id = b.user_id WHERE ? IS NULL OR u.email = ? GROUP BY 1",
            (user, user),
        ).fetchall()
    return {str(role): int(n) for role, n in rows}


def _folder(port: int, user: str, name: str) -> dict[str, set[str]]:
    """{subject: flags} of a folder, read back with imaplib after a login (which files
    what waits); a subject there twice fails."""
    imap = imaplib.IMAP4("127.0.0.1", port)
    try:
        imap.login(user, PASSWORD)
        status, _ = imap.select(f'"{name}"', readonly=True)
        assert status == "OK", name
        _, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    finally:
        imap.logout()
    found: dict[str, set[str]] = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, body = item
        flags = re.search(rb"FLAGS \(([^)]*)\)", head)
        assert flags is not None
        subject = body.decode().split(":", 1)[1].strip()
        assert subject not in found, f"{subject} filed twice"
        found[subject] = set(flags.group(1).decode().split()) - {"\\Recent"}
    return found


def _check(port: int, user: str, subjects: list[str]) -> None:
    projects = _folder(port, user, FOLDER)
    inbox = _folder(port, user, "INBOX")
    want_projects = {s for s in subjects if s.startswith("proj")}
    assert set(projects) == want_projects
    assert set(inbox) == {s for s in subjects if not s.startswith("proj")}
    assert all(flags == {"\\Flagged", "$Work"} for flags in projects.values())
    for subject, flags in inbox.items():
        assert flags == ({"\\Seen"} if subject.startswith("seen") else set()), subject


def _login_and_look(port: int, user: str) -> None:
    imap = imaplib.IMAP4("127.0.0.1", port)
    try:
        imap.login(user, PASSWORD)
        status, _ = imap.select("INBOX")
        assert status == "OK"
        _, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        subjects = [i[1] for i in data if isinstance(i, tuple)]
        assert not any(b"proj" in s for s in subjects), "a filed message showed in INBOX"
    finally:
        imap.logout()


def _pop3_look(port: int, user: str) -> None:
    pop = poplib.POP3("127.0.0.1", port, timeout=60)
    try:
        pop.user(user)
        pop.pass_(PASSWORD)
        count = len(pop.list()[1])
        for n in range(1, count + 1):
            head = b"\n".join(pop.top(n, 0)[1])
            assert b"Subject: proj" not in head, "POP3 listed a message bound for a folder"
    finally:
        pop.quit()


class _Idler(threading.Thread):
    """An IMAPClient in IDLE on the target folder, counting the EXISTS it hears."""

    def __init__(self, port: int, user: str) -> None:
        super().__init__(daemon=True)
        self.client = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=60)
        self.client.login(user, PASSWORD)
        self.client.select_folder(FOLDER)
        self.highest = 0
        self.want = 0
        self.stop = threading.Event()

    def run(self) -> None:
        self.client.idle()
        deadline = time.monotonic() + 180
        while not self.stop.is_set() and time.monotonic() < deadline:
            for response in self.client.idle_check(timeout=1):
                if len(response) >= 2 and response[1] == b"EXISTS":
                    self.highest = max(self.highest, int(response[0]))
            if self.want and self.highest >= self.want:
                break
        self.client.idle_done()
        self.client.logout()


def test_sessions_and_deliveries_at_once_file_each_message_once(
    server: CryptmailServer, data_dir: Path
) -> None:
    sent: dict[str, list[str]] = {user: [] for user in USERS}
    first = "ann@example.org"
    # Ann's folder exists already and a session of hers idles in it; Ben's and Cid's are
    # made by :create at their first login.
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
    imap.login(first, PASSWORD)
    assert imap.create(f'"{FOLDER}"')[0] == "OK"
    imap.logout()
    idler = _Idler(server.imap_port, first)
    idler.start()

    # While nobody but the idler holds a key: everything bound for a folder waits.
    for user in USERS:
        for kind in KINDS:
            for n in range(2):
                subject = f"{kind} a{n}"
                _send(server.port, user, subject)
                sent[user].append(subject)
    with _db(data_dir) as db:
        notes = [bytes(r[0]) for r in db.execute("SELECT note_sealed FROM cm_filing_notes")]
        others = db.execute(
            "SELECT COUNT(*) FROM cm_filing_notes n JOIN virtual_users u ON u.id = n.user_id "
            "WHERE u.email != ?",
            (first,),
        ).fetchone()[0]
    assert others == 2 * 4  # Ben's and Cid's proj and seen copies: nobody filed them
    assert not any(b"Projects" in n or b"Work" in n or b"Seen" in n for n in notes)
    for user in ("ben@example.org", "cid@example.org"):
        assert _waiting(data_dir, user) == {"inbox": 2, "filing": 4}  # plain ones in INBOX

    # Three IMAP logins and one POP3 login of every user at once, deliveries going on.
    def deliver_more(user: str) -> None:
        for n in range(3):
            for kind in KINDS:
                _send(server.port, user, f"{kind} b{n}")

    for user in USERS:
        sent[user] += [f"{kind} b{n}" for n in range(3) for kind in KINDS]
    idler.want = sum(1 for s in sent[first] if s.startswith("proj"))
    with ThreadPoolExecutor(16) as pool:
        jobs = [pool.submit(deliver_more, user) for user in USERS]
        for _round in range(2):
            for user in USERS:
                jobs += [pool.submit(_login_and_look, server.imap_port, user) for _ in range(3)]
                jobs.append(pool.submit(_pop3_look, server.pop3_port, user))
        for job in jobs:
            job.result()

    idler.join(120)
    idler.stop.set()
    assert idler.highest == idler.want, "IDLE in the target folder did not see every message"
    for user in USERS:
        _check(server.imap_port, user, sent[user])
    waiting = _waiting(data_dir)
    assert waiting.get("filing", 0) == 0
    with _db(data_dir) as db:
        assert db.execute("SELECT COUNT(*) FROM cm_filing_notes").fetchone()[0] == 0
        # The usage counters follow the moves: each mailbox's counters match its rows.
        wrong = db.execute(
            "SELECT b.id FROM cm_mailboxes b LEFT JOIN cm_messages m ON m.mailbox_id = b.id "
            "GROUP BY b.id, b.used_bytes, b.message_count "
            "HAVING b.used_bytes != COALESCE(SUM(m.size_rounded), 0) "
            "OR b.message_count != COUNT(m.id)"
        ).fetchall()
    assert wrong == []
    server.stop()
    assert store_check(data_dir).returncode == 0


def test_a_kill_in_the_middle_of_filing_loses_nothing_and_files_once(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = "ben@example.org"
    monkeypatch.setenv("CRYPTMAIL_CRASH_AT", "filing:before-commit")
    doomed = CryptmailServer(data_dir, config=_config(tmp_path), imap=True)
    doomed.start(timeout=120)
    workers = doomed.worker_pids
    try:
        _send(doomed.port, user, "proj k1")
        _send(doomed.port, user, "seen k2")
        assert _waiting(data_dir) == {"filing": 2}
        # The login files the first note and the server dies before that commits.
        with pytest.raises((imaplib.IMAP4.abort, OSError, EOFError)):
            imap = imaplib.IMAP4("127.0.0.1", doomed.imap_port)
            imap.login(user, PASSWORD)
        assert doomed.process is not None
        assert doomed.process.wait(30) == -9
    finally:
        doomed.kill()
        for pid in workers:  # the LMTP workers this test's server started
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    assert _waiting(data_dir) == {"filing": 2}
    with _db(data_dir) as db:
        assert db.execute("SELECT COUNT(*) FROM cm_filing_notes").fetchone()[0] == 2

    monkeypatch.delenv("CRYPTMAIL_CRASH_AT")
    again = CryptmailServer(data_dir, config=_config(tmp_path), imap=True)
    again.start(timeout=120)
    try:
        with ThreadPoolExecutor(4) as pool:
            for job in [pool.submit(_login_and_look, again.imap_port, user) for _ in range(4)]:
                job.result()
        _check(again.imap_port, user, ["proj k1", "seen k2"])
    finally:
        again.stop()
    assert store_check(data_dir).returncode == 0


def test_a_pop3_login_files_what_waits_before_it_lists_inbox(
    server: CryptmailServer, data_dir: Path
) -> None:
    user = "cid@example.org"
    _send(server.port, user, "seen p1")
    _send(server.port, user, "proj p2")
    assert _waiting(data_dir, user) == {"filing": 2}
    pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=60)
    try:
        pop.user(user)
        pop.pass_(PASSWORD)
        heads = [b"\n".join(pop.top(n, 0)[1]) for n in range(1, len(pop.list()[1]) + 1)]
    finally:
        pop.quit()
    # Filed by this login before it read the maildrop: the kept copy is in INBOX, the
    # other in its folder, which POP3 does not show.
    assert len(heads) == 1 and b"Subject: seen p1" in heads[0]
    assert _waiting(data_dir, user) == {"inbox": 1, "own": 1}
