"""Sort entries from delivery in a real `cryptmail serve` (no background pass).

Four LMTP connections deliver the sorting corpus (odd subjects, addresses, dates,
threads) and marker messages to two crypt-2 users at once (half the messages to both
in one transaction), while two IMAP sessions of one user, from one address, SORT and
THREAD; an LMTP worker is SIGKILLed twice meanwhile (the clients send again). Then:
every message is stored once, every entry has its message and its epoch, nothing of a
subject is in the database file or the data directory. A copy of the data directory
with the entries and chunks deleted is the oracle (the slow path). On the original,
the blobs are removed and the caches overwritten, so only the entries (and chunks the
concurrent SORTs wrote from them) can give a key: a new `serve` answers every
criterion, REVERSE, combinations and both THREAD algorithms exactly as the slow path,
for both users, in two sessions from one address.
"""

from __future__ import annotations

import asyncio
import imaplib
import re
import shutil
import smtplib
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from cryptmail.db import create_engine
from cryptmail.db import tables as t

from .cryptmail_server import PASSWORD, CryptmailServer, db_url, make_users
from .test_imap_sort_record_vs_dovecot import leave_only_the_record
from .test_imap_sort_vs_dovecot import sort_corpus

pytestmark = pytest.mark.integration

ALICE, BOB = "alice@example.org", "bob@example.org"
_WORD = "Quixotrombone"  # in marker subjects and display names: never at rest
_CONFIG = "[imap]\nfts_index = false\n"  # no background pass: the "before the pass" case
_CONNECTIONS = 4

_ASKED = [
    *[
        f"SORT ({c}) UTF-8 ALL"
        for c in (
            "ARRIVAL", "DATE", "SUBJECT", "FROM", "TO", "CC", "SIZE", "DISPLAYFROM",
            "DISPLAYTO", "REVERSE DATE", "REVERSE SUBJECT", "SUBJECT DATE",
            "FROM REVERSE DATE",
        )
    ],
    "UID SORT (SUBJECT) UTF-8 ALL",
    "THREAD REFERENCES UTF-8 ALL",
    "THREAD ORDEREDSUBJECT UTF-8 ALL",
]  # fmt: skip


def _corpus() -> list[bytes]:
    messages = [re.sub(rb"\r?\n", b"\r\n", m) for m in sort_corpus()]
    for i in range(40):
        messages.append(
            (
                f'From: "{_WORD} {i % 7}" <m{i % 5}@example.net>\r\nTo: {ALICE}\r\n'
                f"Subject: Re: {_WORD} plans {i % 9}\r\nMessage-ID: <q{i}@example.net>\r\n"
                f"Date: {1 + i % 28:02d} Nov 2026 10:{i % 60:02d}:00 +0000\r\n\r\nbody {i}\r\n"
            ).encode()
        )
    return messages


def _recipients(index: int) -> list[str]:
    return [ALICE, BOB] if index % 2 else [ALICE] if index % 3 else [BOB]


def _deliver_all(server: CryptmailServer, corpus: list[bytes], failures: list[str]) -> None:
    """Each connection sends its share; a connection a worker's death cut is opened
    again and the message sent again (the retry tag keeps it from being stored twice)."""

    def send(share: list[int]) -> None:
        client: smtplib.LMTP | None = None
        for index in share:
            for _attempt in range(20):
                try:
                    if client is None:
                        client = smtplib.LMTP("127.0.0.1", server.port)
                    refused = client.sendmail("s@example.net", _recipients(index), corpus[index])
                    assert not refused, refused
                    break
                except (smtplib.SMTPException, OSError):
                    client = None
                    time.sleep(0.2)
            else:
                failures.append(f"message {index} not delivered")
        if client is not None:
            client.quit()

    threads = [
        threading.Thread(target=send, args=(list(range(n, len(corpus), _CONNECTIONS)),))
        for n in range(_CONNECTIONS)
    ]
    for thread in threads:
        thread.start()
    for kill in range(2):  # SIGKILL a worker mid-delivery
        time.sleep(1.0 + kill)
        if server.worker_pids:
            server.kill_worker(server.worker_pids[0])
    for thread in threads:
        thread.join(300)


def _session(server: CryptmailServer, email: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(email, PASSWORD)
    client.select("INBOX")
    return client


def _ask(client: imaplib.IMAP4, command: str) -> bytes:
    kind, rest = command.split(" ", 1)
    if kind == "UID":
        name, args = rest.split(" ", 1)
        status, data = client.uid(name, args)
    elif kind == "SORT":
        criteria, charset, search = rest.rsplit(" ", 2)
        status, data = client.sort(criteria, charset, search)
    else:
        algorithm, charset, search = rest.split(" ")
        status, data = client.thread(algorithm, charset, search)
    assert status == "OK", (command, data)
    return b" ".join(part for part in data if isinstance(part, bytes))


def _answers(server: CryptmailServer, email: str) -> dict[str, bytes]:
    client = _session(server, email)
    try:
        return {command: _ask(client, command) for command in _ASKED}
    finally:
        client.logout()


def _collect(server: CryptmailServer, email: str, into: list[dict[str, bytes]]) -> None:
    into.append(_answers(server, email))


async def _facts(data_dir: Path) -> dict[str, int]:
    engine = create_engine(db_url(data_dir))
    m, e, ep = t.cm_messages, t.cm_sort_entries, t.cm_sort_epochs
    try:
        async with engine.connect() as conn:

            async def count(query: object) -> int:
                return int((await conn.execute(query)).scalar_one())  # type: ignore[call-overload]

            return {
                "messages": await count(select(func.count()).select_from(m)),
                "entries": await count(select(func.count()).select_from(e)),
                "orphans": await count(
                    select(func.count()).where(~e.c.message_id.in_(select(m.c.id)))
                ),
                "without epoch": await count(
                    select(func.count()).where(~e.c.epoch_id.in_(select(ep.c.id)))
                ),
                "chunks": await count(select(func.count()).select_from(t.cm_sort_chunks)),
            }
    finally:
        await engine.dispose()


async def _only_the_slow_path(data_dir: Path) -> None:
    engine = create_engine(db_url(data_dir))
    try:
        async with engine.begin() as conn:
            for table in (t.cm_sort_entries, t.cm_sort_epochs, t.cm_sort_chunks):
                await conn.execute(delete(table))
    finally:
        await engine.dispose()


def test_delivered_entries_answer_as_the_slow_path(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {ALICE: 2, BOB: 2})
    corpus = _corpus()
    failures: list[str] = []
    with CryptmailServer(data_dir, imap=True, config=_CONFIG) as server:
        first = _session(server, ALICE)  # creates the mailboxes before the rush
        first.logout()
        stop = threading.Event()
        sorted_during: list[int] = []

        def sort_meanwhile() -> None:
            clients = [_session(server, ALICE), _session(server, ALICE)]
            while not stop.is_set():
                for client in clients:
                    client.noop()
                    _ask(client, "SORT (SUBJECT) UTF-8 ALL")
                    _ask(client, "THREAD REFERENCES UTF-8 ALL")
                    sorted_during.append(1)
                time.sleep(0.3)
            for client in clients:
                client.logout()

        sorter = threading.Thread(target=sort_meanwhile)
        sorter.start()
        try:
            _deliver_all(server, corpus, failures)
        finally:
            stop.set()
            sorter.join(120)
    assert not failures, failures
    assert sorted_during
    facts = asyncio.run(_facts(data_dir))
    expected_copies = sum(len(_recipients(i)) for i in range(len(corpus)))
    assert facts["messages"] == expected_copies, facts  # none lost, none twice
    assert facts["orphans"] == 0 and facts["without epoch"] == 0, facts
    assert facts["entries"] > 0, facts
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert _WORD.encode() not in path.read_bytes(), path
    slow_dir = tmp_path / "slow" / "data"
    shutil.copytree(data_dir, slow_dir)
    asyncio.run(_only_the_slow_path(slow_dir))
    with CryptmailServer(slow_dir, imap=True, config=_CONFIG) as slow:
        expected = {email: _answers(slow, email) for email in (ALICE, BOB)}
    asyncio.run(leave_only_the_record(data_dir))
    with CryptmailServer(data_dir, imap=True, config=_CONFIG) as server:
        for email in (ALICE, BOB):
            results: list[dict[str, bytes]] = []
            threads = [
                threading.Thread(target=_collect, args=(server, email, results)) for _ in range(2)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert results == [expected[email], expected[email]], email
    after = asyncio.run(_facts(data_dir))
    assert after["entries"] == 0 and after["chunks"] >= 2, after  # folded into chunks
