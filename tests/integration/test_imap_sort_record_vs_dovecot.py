"""SORT and THREAD from the sort key record alone, against Dovecot 2.3 as the oracle.

The sorting corpus of `test_imap_sort_vs_dovecot` (base-subject rules, address forms,
odd and missing dates, equal keys, broken threads) plus the MIME corpus is APPENDed
with the same internal dates to a private Dovecot and to a real `cryptmail serve`. A
session stays logged in until the background pass has recorded every message's sort
keys (read back with the user's password, as a session would). Then the server is
stopped, the message caches are overwritten and the blobs removed, so that nothing but
the record can give a key, and a new `cryptmail serve` (a new process: no key in
memory) answers every sort criterion, REVERSE, combinations, UID SORT, ESORT and both
THREAD algorithms exactly as Dovecot does, in two sessions at once.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from cryptmail.db import create_engine
from cryptmail.db import tables as t
from cryptmail.imap.message._sortrecord import decode_sort_record
from cryptmail.keys import unlock_account
from cryptmail.secret import Password
from cryptmail.store import inbox_id, load_sort_chunks, open_sort_chunk
from imap.mime_corpus import generate_corpus

from .cryptmail_server import CRYPTO, PASSWORD, CryptmailServer, db_url, make_users
from .servers.dovecot import Dovecot, DovecotUser, dovecot_instances
from .test_imap_sessions_vs_dovecot import Differences, Endpoint, Literal, _login
from .test_imap_sort_vs_dovecot import COMMANDS, INTERNAL, KNOWN_DIFFERENCES, sort_corpus

pytestmark = pytest.mark.integration

ALICE = "alice@example.org"
DOVECOT_USER, DOVECOT_PASSWORD = "sorter", "sorter-pw"


def _without_content_search(command: tuple[bytes | Literal, ...]) -> bool:
    """Commands whose search program needs no message text (none is readable here)."""
    return not any(isinstance(part, Literal) or b"SUBJECT meeting" in part for part in command)


RECORD_COMMANDS = [command for command in COMMANDS if _without_content_search(command)]


async def _recorded_and_total(data_dir: Path) -> tuple[int, int]:
    engine = create_engine(db_url(data_dir))
    try:
        account, _slot = await unlock_account(engine, ALICE, Password.from_str(PASSWORD), CRYPTO)
        async with engine.connect() as conn:
            box = await inbox_id(conn, account.user.id)
            mb, m = t.cm_mailboxes, t.cm_messages
            validity = (await conn.execute(select(mb.c.uidvalidity).where(mb.c.id == box))).one()[0]
            total = (await conn.execute(select(func.count()).where(m.c.mailbox_id == box))).one()[0]
        recorded = 0
        for chunk, sealed in (await load_sort_chunks(engine, box, int(validity))).items():
            opened = open_sort_chunk(account, box, int(validity), chunk, sealed)
            recorded += len(decode_sort_record(opened))
        return recorded, int(total)
    finally:
        await engine.dispose()


async def leave_only_the_record(data_dir: Path) -> None:
    """Every message cache overwritten (it no longer opens), every blob removed: what
    SORT answers then comes from the sort key records (and delivery's sort entries)."""
    engine = create_engine(db_url(data_dir))
    try:
        async with engine.begin() as conn:
            await conn.execute(update(t.cm_messages).values(cache_sealed=b"not a cache"))
    finally:
        await engine.dispose()
    for path in (data_dir / "blobs").rglob("*"):
        if path.is_file():
            path.unlink()


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with dovecot_instances() as factory:
        yield factory(users=[DovecotUser(DOVECOT_USER, DOVECOT_PASSWORD)], imap=True)


def _append_all(endpoint: Endpoint, corpus: list[bytes]) -> None:
    for index, message in enumerate(corpus):
        date = INTERNAL[index % len(INTERNAL)].encode()
        data = re.sub(rb"\r?\n", b"\r\n", message)
        flags = b"\\Seen" if index % 2 else b""
        response = endpoint.command(b'APPEND INBOX (%s) "%s" ' % (flags, date), Literal(data))
        assert b" OK " in response[-1], (endpoint.name, index, response)


def test_a_new_process_answers_from_the_record_as_dovecot_does(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    assert dovecot.imap_port is not None
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {ALICE: 2})
    corpus = sort_corpus() + generate_corpus(7, 30)
    theirs = Endpoint("dovecot", _login(dovecot.host, dovecot.imap_port, DOVECOT_USER,
                                        DOVECOT_PASSWORD))  # fmt: skip
    _append_all(theirs, corpus)
    theirs.command(b"SELECT INBOX")
    with CryptmailServer(data_dir, imap=True) as server:
        ours = Endpoint("cryptmail", _login("127.0.0.1", server.imap_port, ALICE, PASSWORD))
        _append_all(ours, corpus)
        ours.command(b"SELECT INBOX")
        deadline = time.monotonic() + 180
        while True:  # the session stays: the pass indexes, then records
            recorded, total = asyncio.run(_recorded_and_total(data_dir))
            if total == len(corpus) and recorded == total:
                break
            assert time.monotonic() < deadline, f"{recorded} of {total} recorded"
            ours.command(b"NOOP")
            time.sleep(0.5)
        ours.client.logout()
    asyncio.run(leave_only_the_record(data_dir))
    with CryptmailServer(data_dir, imap=True) as server:
        sessions = [
            Endpoint(f"cryptmail {n}", _login("127.0.0.1", server.imap_port, ALICE, PASSWORD))
            for n in (1, 2)
        ]
        for endpoint in sessions:
            endpoint.command(b"SELECT INBOX")
        diffs = Differences([])
        for command in RECORD_COMMANDS:
            for endpoint in sessions:
                theirs.counter = endpoint.counter  # the same tags (ESEARCH names them)
                diffs.compare(theirs, endpoint, *command)
        for endpoint in sessions:
            endpoint.client.logout()
    theirs.client.logout()
    found = {command.decode(errors="replace") for command, _e, _g in diffs.found}
    assert not found - set(KNOWN_DIFFERENCES), diffs.report()
