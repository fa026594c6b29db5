"""Two IMAP sessions on one mailbox on MariaDB, one expunging and one storing flags,
while LMTP delivers into it: the mix that showed a lost deadlock as `NO [UNAVAILABLE]`
(a phone and a desktop on one INBOX, Postfix delivering meanwhile). Every command must
answer OK and every delivery 250, and the server's log must show no transaction the
database aborted: one it aborts to resolve a deadlock is run again
(`run_transaction(..., retry=True)`), not shown to the client nor failing a background
pass (the search indexer's `fill_caches` lost a deadlock here with the retry taken out).

Beside test_multi_session.py, whose model checks the answers' content; this one only
asks that nobody is refused, with the two writers on one mailbox as often as possible.
"""

from __future__ import annotations

import asyncio
import imaplib
import smtplib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cryptmail.config import Argon2Config, CryptoConfig
from cryptmail.db import create_engine, upgrade
from cryptmail.keys import create_user
from cryptmail.secret import Password
from cryptmail.users import add_domain

from .cryptmail_server import CryptmailServer
from .servers import Database

pytestmark = pytest.mark.integration

USER = "pair@example.org"
PASSWORD = "one mailbox, two clients 7"
SENDER = "sender@example.net"
CRYPTO = CryptoConfig(argon2=Argon2Config(memory_kib=19456, time_cost=2))
ROUNDS = 40
DELIVERIES = 60
TIMEOUT_S = 30.0


@pytest.fixture
def server(mariadb_database: Database, tmp_path: Path) -> Iterator[CryptmailServer]:
    url = str(mariadb_database.url)

    async def make_user() -> None:
        engine = create_engine(url)
        await upgrade(engine)
        async with engine.begin() as conn:
            await add_domain(conn, "example.org")
        await create_user(engine, USER, Password.from_str(PASSWORD), CRYPTO)
        await engine.dispose()

    asyncio.run(make_user())
    data = tmp_path / "data"
    data.mkdir()
    serve = CryptmailServer(
        data,
        imap=True,
        config=f"[database]\nurl = '{url}'\n[crypto.argon2]\nmemory_kib = 19456\ntime_cost = 2\n",
    )
    serve.start(timeout=60)
    try:
        yield serve
    finally:
        serve.stop()


def _deliver(port: int, n: int) -> None:
    message = f"From: {SENDER}\r\nTo: {USER}\r\nSubject: m{n}\r\n\r\nbody {n}\r\n"
    with smtplib.LMTP("127.0.0.1", port, timeout=TIMEOUT_S) as client:
        client.sendmail(SENDER, [USER], message)


def _session(port: int) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT_S)
    imap.login(USER, PASSWORD)
    typ, _ = imap.select("INBOX")
    assert typ == "OK"
    return imap


def _expunger(port: int, answers: list[str]) -> None:
    imap = _session(port)
    try:
        for _ in range(ROUNDS):
            typ, data = imap.uid("STORE", "1:*", "+FLAGS.SILENT", r"(\Deleted)")
            answers.append(f"UID STORE \\Deleted: {typ} {data!r}")
            typ, data = imap.expunge()
            answers.append(f"EXPUNGE: {typ} {data[-1:]!r}")
    finally:
        imap.logout()


def _flagger(port: int, answers: list[str]) -> None:
    imap = _session(port)
    try:
        for n in range(ROUNDS * 2):
            change = "+FLAGS.SILENT" if n % 2 == 0 else "-FLAGS.SILENT"
            typ, data = imap.uid("STORE", "1:*", change, r"($Desktop \Seen)")
            answers.append(f"UID STORE {change}: {typ} {data!r}")
    finally:
        imap.logout()


def _deliverer(port: int, answers: list[str]) -> None:
    for n in range(DELIVERIES):
        _deliver(port, n)
        answers.append("LMTP: OK")


def test_expunge_and_store_on_one_mailbox_while_mail_arrives(server: CryptmailServer) -> None:
    for n in range(10):  # something to expunge and flag from the start
        _deliver(server.port, 1000 + n)
    answers: dict[str, list[str]] = {"expunge": [], "store": [], "lmtp": []}
    failures: list[str] = []
    runs: list[tuple[str, Callable[[int, list[str]], None], int]] = [
        ("expunge", _expunger, server.imap_port),
        ("store", _flagger, server.imap_port),
        ("lmtp", _deliverer, server.port),
    ]

    def run(name: str, body: Callable[[int, list[str]], None], port: int) -> None:
        try:
            body(port, answers[name])
        except Exception as exc:  # an LMTP 4xx, an IMAP BAD, a dropped connection
            failures.append(f"{name}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=spec) for spec in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not any(thread.is_alive() for thread in threads)
    assert not failures
    refused = [a for name in ("expunge", "store") for a in answers[name] if ": OK " not in a]
    assert not refused, refused
    assert len(answers["expunge"]) == 2 * ROUNDS and len(answers["store"]) == 2 * ROUNDS
    assert len(answers["lmtp"]) == DELIVERIES
    log = server.log_path.read_text()
    assert "TransactionAborted" not in log and "DatabaseUnavailable" not in log
    print(f"{log.count('running it again')} transactions run again after a deadlock")
