"""SAVEDATE (RFC 8514) and STATUS=SIZE (RFC 8438) over a live server."""

from __future__ import annotations

import datetime as dt
import imaplib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ...raw_client import RawClient
from ...server_rig import PASSWORD, USER, ImapRig, start_rig

OLD_DATE = b'"01-Jan-2020 10:00:00 +0000"'


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _client(rig: ImapRig) -> RawClient:
    client = RawClient.connect(rig.port)
    client.login()
    return client


def _append(client: RawClient, box: bytes, message: bytes) -> None:
    tag = client.next_tag()
    client.send(tag + b" APPEND " + box + b" () " + OLD_DATE + b" {%d+}\r\n" % len(message))
    client.send(message + b"\r\n")
    _, done = client.until(tag)
    assert b" OK " in done, done


def _search(client: RawClient, keys: bytes) -> bytes:
    untagged, done = client.ask(b"UID SEARCH " + keys)
    assert b" OK " in done, done
    return untagged[0]


def test_savedate_fetch_and_search(rig: ImapRig) -> None:
    client = _client(rig)
    _append(client, b"INBOX", b"Subject: old\r\n\r\nbody\r\n")
    _append(client, b"INBOX", b"Subject: old too\r\n\r\nbody\r\n")
    client.ask(b"SELECT INBOX")
    untagged, done = client.ask(b"UID FETCH 1:* (INTERNALDATE SAVEDATE)")
    assert b" OK " in done
    today = dt.datetime.now(dt.UTC).date()
    for line in untagged:
        found = re.search(rb'INTERNALDATE "([^"]+)" SAVEDATE "([^"]+)"', line)
        assert found is not None, line
        assert found.group(1) == OLD_DATE.strip(b'"')
        saved = dt.datetime.strptime(found.group(2).decode(), "%d-%b-%Y %H:%M:%S %z")
        assert abs(saved.date() - today) <= dt.timedelta(days=1)
    # The internal date is from 2020, the save date is now: the keys tell them apart.
    assert _search(client, b"BEFORE 1-Jan-2021") == b"* SEARCH 1 2"
    assert _search(client, b"SAVEDBEFORE 1-Jan-2021") == b"* SEARCH"
    assert _search(client, b"SAVEDSINCE 1-Jan-2021") == b"* SEARCH 1 2"
    day = (today - dt.timedelta(days=2)).strftime("%d-%b-%Y").encode()
    assert _search(client, b"SAVEDSINCE " + day + b" SAVEDATESUPPORTED") == b"* SEARCH 1 2"
    assert _search(client, b"NOT SAVEDATESUPPORTED") == b"* SEARCH"
    assert _search(client, b"SAVEDON 1-Jan-2020") == b"* SEARCH"
    _, done = client.ask(b"UID SEARCH SAVEDON 31-Foo-2020")
    assert b" BAD " in done
    _, done = client.ask(b"UID SEARCH SAVEDATESUPPORTED 1")
    assert b" BAD " not in done  # "1" is a sequence set: a valid second key


def test_copy_gets_its_own_savedate_row(rig: ImapRig) -> None:
    client, other = _client(rig), _client(rig)
    _append(client, b"INBOX", b"Subject: to copy\r\n\r\nbody\r\n")
    client.ask(b"SELECT INBOX")
    _, done = client.ask(b"UID COPY 1 Archive")
    assert b" OK " in done
    other.ask(b"EXAMINE Archive")
    untagged, _ = other.ask(b"FETCH 1 (SAVEDATE INTERNALDATE)")
    assert re.search(rb'SAVEDATE "[^"]+" INTERNALDATE "01-Jan-2020', untagged[0]), untagged


def test_status_size_is_the_sum_of_rfc822_size(rig: ImapRig) -> None:
    messages = [b"Subject: a\r\n\r\nshort\r\n", b"Subject: b\r\n\r\n" + b"line\r\n" * 2000]
    for message in messages:
        rig.deliver(message)
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(USER, PASSWORD)
    second = imaplib.IMAP4("127.0.0.1", rig.port)
    second.login(USER, PASSWORD)
    typ, data = imap.status("INBOX", "(SIZE MESSAGES)")
    assert typ == "OK"
    size = int(re.search(rb"SIZE (\d+)", data[0]).group(1))  # type: ignore[union-attr]
    second.select("INBOX", readonly=True)
    typ, fetched = second.fetch("1:*", "(RFC822.SIZE)")
    sizes = [int(re.search(rb"RFC822.SIZE (\d+)", bytes(f)).group(1)) for f in fetched]  # type: ignore[arg-type,union-attr]
    # RFC 8438: at least the sum of RFC822.SIZE. Sizes are kept padded to 4 KiB (no
    # exact size at rest), and SIZE is their sum, as the quota counts them.
    assert size % 4096 == 0 and sum(sizes) <= size <= sum(sizes) + 4096 * len(sizes)
    typ, data = imap.status("Trash", "(SIZE)")
    assert data[0].endswith(b"(SIZE 0)")
    imap.logout()
    second.logout()
