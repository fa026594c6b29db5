"""The IMAP server on a loopback port, driven by imaplib and imapclient."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from .server_rig import PASSWORD, USER, ImapRig, start_rig

MESSAGE = (
    b"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: hello there\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m1@example.org>\r\n\r\n"
    b"Body line one\r\nsecond line with needle\r\n"
)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def client(rig: ImapRig) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(USER, PASSWORD)
    return imap


def test_login_select_fetch(rig: ImapRig) -> None:
    rig.deliver(MESSAGE)
    imap = client(rig)
    typ, data = imap.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    typ, data = imap.fetch("1", "(UID FLAGS RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK"
    assert data[0][1] == MESSAGE
    assert b"RFC822.SIZE %d" % len(MESSAGE) in data[0][0]
    assert b"\\Recent" in data[0][0]
    typ, data = imap.uid("SEARCH", None, "BODY", "needle")
    assert data == [b"1"]
    typ, data = imap.search(None, "SUBJECT", "nothing")
    assert data == [b""]
    imap.logout()


def test_bad_login(rig: ImapRig) -> None:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login(USER, "wrong")
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login("nobody@example.org", "wrong")
    imap.login(USER, PASSWORD)
    imap.logout()
