"""The encrypted search index against a live `cryptmail serve` and imaplib: SEARCH gives
the same answers before, during and after indexing, for two sessions of one user and
another user at once; mail delivered meanwhile is found at once (slow path); a kill -9
in the middle of indexing and a damaged segment leave correct answers and an index that
completes."""

from __future__ import annotations

import asyncio
import imaplib
import smtplib
import sqlite3
import time
from pathlib import Path

from cryptmail.db import create_engine
from cryptmail.keys import unlock_account
from cryptmail.secret import Password
from cryptmail.store.fulltext import UserIndex, user_blobs

from .cryptmail_server import CRYPTO, PASSWORD, CryptmailServer, db_url, make_users

ALICE, BOB = "alice@example.org", "bob@example.org"


def _message(i: int, to: str) -> bytes:
    rare = " Rarissimo" if i % 50 == 7 else ""
    subject = f"Report {i} Ünïcode" if i % 3 == 0 else f"Note {i}"
    return (
        f"From: Sender{i % 5} <s{i % 5}@example.net>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        f"Common words here, token uniq{i}{rare}. Stra=C3=9Fe end\r\n"
    ).encode()


def _deliver(server: CryptmailServer, start: int, count: int, to: str = ALICE) -> None:
    with smtplib.LMTP("127.0.0.1", server.port) as client:
        for i in range(start, start + count):
            client.sendmail("s@example.net", [to], _message(i, to))


def _expected(total: int) -> dict[str, set[int]]:
    uids = range(1, total + 1)  # message i has UID i + 1
    return {
        'BODY "Rarissimo"': {u for u in uids if (u - 1) % 50 == 7},
        'BODY "uniq12"': {u for u in uids if str(u - 1).startswith("12")},
        'BODY "niq3"': {u for u in uids if str(u - 1).startswith("3")},
        'BODY "strasse"': set(uids),
        'BODY "words here, tok"': set(uids),
        'TEXT "sender3"': {u for u in uids if (u - 1) % 5 == 3},
        'SUBJECT "report"': {u for u in uids if (u - 1) % 3 == 0},
        'SUBJECT "REPORT 1"': {u for u in uids if (u - 1) % 3 == 0 and str(u - 1)[0] == "1"},
        'FROM "s4@example"': {u for u in uids if (u - 1) % 5 == 4},
        'BODY "nowhere-at-all"': set(),
    }


def _login(server: CryptmailServer, email: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(email, PASSWORD)
    client.select("INBOX")
    return client


def _search(client: imaplib.IMAP4, criteria: str) -> set[int]:
    status, data = client.uid("SEARCH", "CHARSET", "UTF-8", criteria)
    assert status == "OK", data
    return {int(n) for n in data[0].split()}


def _check(client: imaplib.IMAP4, total: int) -> None:
    for criteria, want in _expected(total).items():
        assert _search(client, criteria) == want, criteria


def _indexed(data_dir: Path, email: str) -> tuple[int, int]:
    """(messages indexed, messages) of `email`, read with the password as a session would."""

    async def run() -> tuple[int, int]:
        engine = create_engine(db_url(data_dir))
        account, _ = await unlock_account(engine, email, Password.from_str(PASSWORD), CRYPTO)
        index = UserIndex(engine, account)
        await index.refresh()
        blobs = await user_blobs(engine, account.user.id)
        await engine.dispose()
        return len(index.indexed & blobs.keys()), len(blobs)

    return asyncio.run(run())


def _wait_indexed(data_dir: Path, email: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, total = _indexed(data_dir, email)
        if done == total:
            return
        time.sleep(0.5)
    raise AssertionError(
        f"index of {email} incomplete after {timeout} s: {_indexed(data_dir, email)}"
    )


def test_search_is_the_same_before_during_and_after_indexing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {ALICE: 2, BOB: 2})
    server = CryptmailServer(data_dir, imap=True)
    server.start()
    try:
        _deliver(server, 0, 400)
        _deliver(server, 0, 60, to=BOB)
        phone, desktop, other = _login(server, ALICE), _login(server, ALICE), _login(server, BOB)
        _check(phone, 400)  # at once: mostly the slow path, indexing has just begun
        _check(other, 60)
        _wait_indexed(data_dir, ALICE)
        _wait_indexed(data_dir, BOB)
        _check(desktop, 400)
        _check(phone, 400)
        _check(other, 60)
        # Mail delivered now is not indexed yet: SEARCH still finds it.
        _deliver(server, 400, 1)
        phone.noop()
        desktop.noop()
        assert _search(phone, 'BODY "uniq400"') == {401}
        assert _search(desktop, 'BODY "uniq40"') == {41, 401}
        _check(desktop, 401)
        for client in (phone, desktop, other):
            client.logout()
    finally:
        server.stop()


def test_kill_mid_index_and_a_damaged_segment(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {ALICE: 2})
    config = "[imap]\nfts_background_percent = 20\n"
    server = CryptmailServer(data_dir, imap=True, config=config)
    server.start()
    killed_session: imaplib.IMAP4 | None = None
    try:
        _deliver(server, 0, 1500)
        client = killed_session = _login(server, ALICE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill while some, not all, is indexed
            done, total = _indexed(data_dir, ALICE)
            if done:
                break
            time.sleep(0.05)
        assert 0 < done < total, (done, total)
    finally:
        server.kill()
        if killed_session is not None:  # its server is gone: close our socket
            killed_session.shutdown()
    database = sqlite3.connect(data_dir / "cryptmail.db")
    with database:  # flip a byte of one segment: it must be dropped, never believed
        row_id, sealed = database.execute("SELECT id, sealed FROM cm_fts_segments").fetchone()
        database.execute(
            "UPDATE cm_fts_segments SET sealed = ? WHERE id = ?",
            (sealed[:-5] + bytes([sealed[-5] ^ 0x40]) + sealed[-4:], row_id),
        )
    database.close()
    server = CryptmailServer(data_dir, imap=True)
    server.start()
    try:
        client = _login(server, ALICE)
        _check(client, 1500)
        _wait_indexed(data_dir, ALICE, timeout=300)
        _check(client, 1500)
        client.logout()
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert f"search index segment {row_id} of user id" in log
