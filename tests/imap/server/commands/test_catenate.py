"""CATENATE (RFC 4469) over a live server: TEXT and URL parts, sections and partials,
another user's mailbox refused with BADURL, mixed with MULTIAPPEND, several sessions."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ...raw_client import RawClient
from ...server_rig import ImapRig, start_rig

OTHER = "dave@example.org"
OTHER_PASSWORD = "dave password 4"
FORWARDED = (
    b"From: a@example.org\r\nSubject: original\r\nContent-Type: multipart/mixed; boundary=x\r\n"
    b"\r\n--x\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--x\r\n"
    b"Content-Type: text/plain\r\n\r\nsecond part\r\n--x--\r\n"
)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path, **{"imap.append_limit": 200_000})


def _client(rig: ImapRig, user: str | None = None) -> RawClient:
    client = RawClient.connect(rig.port)
    if user is None:
        client.login()
    else:
        _, done = client.ask(f'LOGIN {user} "{OTHER_PASSWORD}"'.encode())
        assert b" OK " in done
    return client


def _text(data: bytes) -> bytes:
    return b"TEXT {%d+}\r\n" % len(data) + data


def _uidvalidity(client: RawClient, box: bytes = b"INBOX") -> int:
    untagged, _ = client.ask(b"STATUS " + box + b" (UIDVALIDITY)")
    found = re.search(rb"UIDVALIDITY (\d+)", untagged[0])
    assert found is not None
    return int(found.group(1))


def _body(client: RawClient, box: bytes, uid: int) -> bytes:
    client.ask(b"EXAMINE " + box)
    untagged, _ = client.ask(b"UID FETCH %d BODY.PEEK[]" % uid)
    found = re.search(rb"BODY\[\] \{(\d+)\}\r\n", untagged[0])
    assert found is not None, untagged
    return untagged[0][found.end() : found.end() + int(found.group(1))]


def test_text_and_url_parts(rig: ImapRig) -> None:
    rig.deliver(FORWARDED)
    client = _client(rig)
    validity = _uidvalidity(client)
    head = b"From: me@example.org\r\nSubject: fwd\r\n\r\nSee below.\r\n"
    command = (
        b"APPEND Drafts (\\Draft) CATENATE (" + _text(head)
        + b' URL "/INBOX;UIDVALIDITY=%d/;UID=1/;SECTION=2"' % validity
        + b" " + _text(b"\r\n--\r\n")
        + b' URL "imap://alice%40example.org@localhost/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20(SUBJECT)"'
        + b' URL "/INBOX/;UID=1/;PARTIAL=0.4")'
    )  # fmt: skip
    _, done = client.ask(command)
    assert re.search(rb"OK \[APPENDUID \d+ 1\]", done), done
    assert _body(client, b"Drafts", 1) == (
        head + b"second part" + b"\r\n--\r\n" + b"Subject: original\r\n\r\n" + b"From"
    )
    untagged, _ = client.ask(b"UID FETCH 1 FLAGS")
    assert b"\\Draft" in untagged[0]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (b'"imap://dave%40example.org@localhost/INBOX/;UID=1"', b"another user"),
        (b'"/INBOX;UIDVALIDITY=1/;UID=1"', b"UIDVALIDITY"),
        (b'"/INBOX/;UID=99"', b"message does not exist"),
        (b'"/Nowhere/;UID=1"', b"mailbox does not exist"),
        (b'"/INBOX/;UID=1/;SECTION=7"', b"part does not exist"),
        # URLAUTH is supported now: a URL without a valid token gets URLFETCH's one answer.
        (
            b'"/INBOX/;UID=1;EXPIRE=2030-01-01T00:00:00Z;URLAUTH=anonymous"',
            b"URLAUTH URL is not valid",
        ),
        (b'"http://example.org/"', b"Invalid IMAP URL"),
    ],
    ids=["other-user", "uidvalidity", "uid", "mailbox", "section", "urlauth", "scheme"],
)
def test_bad_urls_are_refused_and_nothing_is_stored(rig: ImapRig, url: bytes, why: bytes) -> None:
    rig.add_user(OTHER, OTHER_PASSWORD)
    rig.deliver(FORWARDED)
    rig.deliver(b"Subject: dave's secret\r\n\r\nprivate\r\n", OTHER)
    client = _client(rig)
    _, done = client.ask(
        b"APPEND Drafts CATENATE (" + _text(b"x: y\r\n\r\n") + b" URL " + url + b")"
    )
    assert b"NO [BADURL " in done and why in done, done
    assert url.strip(b'"') in done  # the code names the URL (RFC 4469 5)
    untagged, _ = client.ask(b"STATUS Drafts (MESSAGES)")
    assert untagged == [b"* STATUS Drafts (MESSAGES 0)"]


def test_multiappend_mixes_literals_and_catenate_all_or_nothing(rig: ImapRig) -> None:
    rig.deliver(FORWARDED)
    client = _client(rig)
    plain = b"Subject: plain\r\n\r\nplain\r\n"
    command = (
        b"APPEND Archive {%d+}\r\n" % len(plain) + plain
        + b" CATENATE (" + _text(b"Subject: cat\r\n\r\n") + b' URL "/INBOX/;UID=1/;SECTION=1")'
        + b" {%d+}\r\n" % len(plain) + plain
    )  # fmt: skip
    _, done = client.ask(command)
    assert re.search(rb"OK \[APPENDUID \d+ 1:3\]", done), done
    assert _body(client, b"Archive", 2) == b"Subject: cat\r\n\r\nfirst part"
    assert _body(client, b"Archive", 3) == plain
    # The same with a bad URL in the middle: none of the three is stored.
    _, done = client.ask(command.replace(b"UID=1/", b"UID=5/"))
    assert b"NO [BADURL" in done
    untagged, _ = client.ask(b"STATUS Archive (MESSAGES)")
    assert untagged == [b"* STATUS Archive (MESSAGES 3)"]


def test_too_big_and_malformed(rig: ImapRig) -> None:
    rig.deliver(b"Subject: big\r\n\r\n" + b"x" * 150_000 + b"\r\n")
    client = _client(rig)
    _, done = client.ask(b'APPEND INBOX CATENATE (URL "/INBOX/;UID=1" URL "/INBOX/;UID=1")')
    assert b"NO [TOOBIG]" in done, done
    for bad in (
        b"APPEND INBOX CATENATE ()",
        b'APPEND INBOX CATENATE (TEXT "quoted")',
        b"APPEND INBOX CATENATE (FILE x)",
        b'APPEND INBOX CATENATE (URL "/INBOX/;UID=1"',
    ):
        _, done = client.ask(bad)
        assert b" BAD " in done, (bad, done)
    untagged, _ = client.ask(b"STATUS INBOX (MESSAGES)")
    assert untagged == [b"* STATUS INBOX (MESSAGES 1)"]


def test_sessions_catenate_from_the_selected_mailbox_at_once(rig: ImapRig) -> None:
    rig.deliver(FORWARDED)
    failures: list[BaseException] = []

    def session(number: int) -> None:
        try:
            client = _client(rig)
            client.ask(b"SELECT INBOX")  # the URL's mailbox is the selected one
            text = _text(b"Subject: copy %d\r\n\r\n" % number)
            _, done = client.ask(
                b"APPEND Sent CATENATE (" + text + b' URL "/INBOX/;UID=1/;SECTION=TEXT")'
            )
            assert b"OK [APPENDUID" in done, done
            client.close()
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=session, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    client = _client(rig)
    untagged, _ = client.ask(b"STATUS Sent (MESSAGES)")
    assert untagged == [b"* STATUS Sent (MESSAGES 4)"]
    assert _body(client, b"Sent", 1).endswith(FORWARDED.split(b"\r\n\r\n", 1)[1])
