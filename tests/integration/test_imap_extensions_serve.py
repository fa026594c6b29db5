# mypy: disable-error-code="index, operator, arg-type, union-attr"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""Issue 16's IMAP extensions against a real `cryptmail serve`, mail arriving over LMTP:
several compressed sessions of two users at once from one address (COMPRESS=DEFLATE
with Python's zlib on the client side), BINARY of a delivered attachment, SAVEDATE and
OBJECTID, CATENATE from the user's own mail and BADURL for another user's, MULTIAPPEND
through imapclient, UTF8=ACCEPT names."""

from __future__ import annotations

import base64
import os
import re
import smtplib
import threading
from collections.abc import Iterator

import pytest

from imap.compress_client import CompressedIMAP4

from .cryptmail_server import PASSWORD, CryptmailServer, make_users

pytestmark = pytest.mark.integration

ALICE, BOB = "alice@example.org", "bob@example.org"
ATTACHMENT = os.urandom(400_000)


def _mail(recipient: str, subject: str) -> bytes:
    return (
        (
            f"From: sender@example.net\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
            "Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable"
            "\r\n\r\nGr=C3=BC=C3=9Fe\r\n--zz\r\nContent-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        + base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n")
        + b"--zz--\r\n"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CryptmailServer]:
    data_dir = tmp_path_factory.mktemp("ext") / "data"
    make_users(data_dir, "example.org", {ALICE: 2, BOB: 2})
    with CryptmailServer(data_dir, imap=True) as serve:
        with smtplib.LMTP("127.0.0.1", serve.port, timeout=60) as lmtp:
            for user in (ALICE, BOB):
                lmtp.sendmail("sender@example.net", [user], _mail(user, f"for {user}"))
        yield serve


def _session(server: CryptmailServer, user: str) -> CompressedIMAP4:
    imap = CompressedIMAP4("127.0.0.1", server.imap_port)
    imap.login(user, PASSWORD)
    caps = imap.capability()[1][0].split()
    for name in (b"COMPRESS=DEFLATE", b"BINARY", b"CATENATE", b"MULTIAPPEND", b"OBJECTID",
                 b"SAVEDATE", b"STATUS=SIZE", b"UTF8=ACCEPT", b"LITERAL-"):  # fmt: skip
        assert name in caps, name
    assert imap.compress() == "OK"
    return imap


def _raw(imap: CompressedIMAP4, line: bytes) -> tuple[list[bytes], bytes]:
    """One command as bytes (LITERAL+ literals inline); its untagged lines and tagged one."""
    tag = imap._new_tag()
    imap.send(tag + b" " + line + b"\r\n")
    lines: list[bytes] = []
    while True:
        response = imap.readline()
        assert response, "connection closed"
        while found := re.search(rb"~?\{(\d+)\}\r\n$", response):
            response += imap.read(int(found.group(1))) + imap.readline()
        if response.startswith(tag + b" "):
            return lines, response
        lines.append(response)


def test_compressed_sessions_of_two_users(server: CryptmailServer) -> None:
    failures: list[BaseException] = []

    def work(user: str) -> None:
        try:
            imap = _session(server, user)
            untagged, done = _raw(imap, b"SELECT INBOX")
            assert b" OK " in done and any(b"[MAILBOXID (" in u for u in untagged)
            untagged, done = _raw(
                imap, b"UID FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1] EMAILID SAVEDATE)"
            )
            assert b" OK " in done, done
            response = untagged[0]
            assert b"BINARY.SIZE[2] %d " % len(ATTACHMENT) in response
            assert ATTACHMENT in response, response[:300]
            assert "Grüße".encode() in response, response[-300:]
            assert re.search(rb'EMAILID \(E[\w-]+\) SAVEDATE "', response), response[-200:]
            untagged, _ = _raw(imap, b"STATUS INBOX (SIZE MESSAGES)")
            size = int(re.search(rb"SIZE (\d+)", untagged[0]).group(1))
            assert size >= len(_mail(user, f"for {user}"))
            imap.logout()
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(u,)) for u in (ALICE, BOB) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not failures, failures


def test_catenate_own_mail_and_badurl_for_another_users(server: CryptmailServer) -> None:
    alice, bob = _session(server, ALICE), _session(server, BOB)
    head = b"Subject: forwarded\r\nContent-Type: application/octet-stream\r\n"
    head += b"Content-Transfer-Encoding: base64\r\n\r\n"
    _, done = _raw(
        alice,
        b"APPEND Drafts CATENATE (TEXT {%d+}\r\n" % len(head) + head
        + b' URL "/INBOX/;UID=1/;SECTION=2")',
    )  # fmt: skip
    assert re.search(rb"OK \[APPENDUID \d+ 1\]", done), done
    _raw(alice, b"EXAMINE Drafts")
    untagged, _ = _raw(alice, b"FETCH 1 BINARY.PEEK[1]")
    assert ATTACHMENT in untagged[0]  # the copied base64 decodes to the attachment
    # Bob names Alice's INBOX: refused, and nothing of hers reaches his Drafts.
    url = b'"imap://alice%40example.org@127.0.0.1/INBOX/;UID=1"'
    _, done = _raw(bob, b"APPEND Drafts CATENATE (URL " + url + b")")
    assert b"NO [BADURL " in done, done
    untagged, _ = _raw(bob, b"STATUS Drafts (MESSAGES)")
    assert untagged == [b"* STATUS Drafts (MESSAGES 0)\r\n"]
    alice.logout()
    bob.logout()


def test_multiappend_with_imapclient_and_utf8_names(server: CryptmailServer) -> None:
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", port=server.imap_port, ssl=False) as client:
        client.login(BOB, PASSWORD)
        result = client.multiappend(
            "Archive", [b"Subject: m1\r\n\r\none\r\n", b"Subject: m2\r\n\r\ntwo\r\n"]
        )
        typ, data = result  # imaplib's (type, data) of the tagged response
        assert typ == "OK" and re.search(rb"APPENDUID \d+ 1:2", data[-1]), result
        client.select_folder("Archive", readonly=True)
        bodies = client.fetch([1, 2], ["BODY.PEEK[TEXT]"])
        assert [bodies[n][b"BODY[TEXT]"] for n in (1, 2)] == [b"one\r\n", b"two\r\n"]
    imap = _session(server, BOB)
    untagged, _ = _raw(imap, b"ENABLE UTF8=ACCEPT")
    assert untagged == [b"* ENABLED UTF8=ACCEPT\r\n"]
    _, done = _raw(imap, 'CREATE "Ärger ✓"'.encode())
    assert b" OK " in done and b"[MAILBOXID (" in done, done
    untagged, _ = _raw(imap, 'LIST "" "Ä*"'.encode())
    assert untagged == ['* LIST (\\HasNoChildren) "/" "Ärger ✓"\r\n'.encode()]
    _, done = _raw(imap, b'CREATE "\xc3("')
    assert b" BAD " in done
    imap.logout()
