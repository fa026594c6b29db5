# mypy: disable-error-code="union-attr"
"""CONTEXT=SEARCH, SEARCHRES and PREVIEW against a real `cryptmail serve`, mail arriving
over LMTP: one user's session keeps a live search while it IDLEs and another of its
sessions changes flags and expunges; a second user's sessions, from the same address,
hear nothing of it; each session's saved result stays its own; PREVIEW of the
delivered mail. Commands go through imaplib's socket so untagged lines keep their order.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
from collections.abc import Iterator

import pytest

from .cryptmail_server import PASSWORD, CryptmailServer, make_users

pytestmark = pytest.mark.integration

ALICE, BOB = "alice@example.org", "bob@example.org"


def _mail(recipient: str, subject: str, body: str) -> bytes:
    return (
        f"From: sender@example.net\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CryptmailServer]:
    data_dir = tmp_path_factory.mktemp("ctx") / "data"
    make_users(data_dir, "example.org", {ALICE: 2, BOB: 2})
    with CryptmailServer(data_dir, imap=True) as serve:
        yield serve


def _deliver(server: CryptmailServer, recipient: str, subject: str, body: str) -> None:
    with smtplib.LMTP("127.0.0.1", server.port, timeout=60) as lmtp:
        lmtp.sendmail("sender@example.net", [recipient], _mail(recipient, subject, body))


class Session:
    """imaplib for the login, then raw lines on its socket."""

    def __init__(self, server: CryptmailServer, user: str) -> None:
        self.imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=60)
        self.imap.login(user, PASSWORD)
        caps = self.imap.capability()[1][0].split()
        for name in (b"SEARCHRES", b"CONTEXT=SEARCH", b"CONTEXT=SORT", b"PREVIEW", b"ESEARCH"):
            assert name in caps, name
        self.count = 0

    def line(self) -> bytes:
        out = self.imap.readline()
        assert out, "connection closed"
        while found := re.search(rb"\{(\d+)\}\r\n$", out):
            out += self.imap.read(int(found.group(1))) + self.imap.readline()
        return out.rstrip(b"\r\n")

    def ask(self, command: bytes) -> tuple[list[bytes], bytes]:
        self.count += 1
        tag = b"c%d" % self.count
        self.imap.send(tag + b" " + command + b"\r\n")
        lines = []
        while not (response := self.line()).startswith(tag + b" "):
            lines.append(response)
        return lines, response

    def ok(self, command: bytes) -> list[bytes]:
        lines, done = self.ask(command)
        assert b" OK " in done, (command, done)
        return lines


def _esearch(lines: list[bytes]) -> list[bytes]:
    return [line for line in lines if line.startswith(b"* ESEARCH")]


def test_live_search_follows_lmtp_delivery_and_other_sessions(server: CryptmailServer) -> None:
    for index in range(3):
        _deliver(server, ALICE, f"first {index}", f"hello number {index}")
    _deliver(server, BOB, "for bob", "bob's own")
    watcher, other = Session(server, ALICE), Session(server, ALICE)
    bob = Session(server, BOB)
    for session in (watcher, other, bob):
        session.ok(b"SELECT INBOX")
    assert watcher.ok(b"UID SEARCH RETURN (UPDATE ALL) UNSEEN") == [
        b'* ESEARCH (TAG "c2") UID ALL 1:3'
    ]
    assert watcher.ok(b"UID SORT RETURN (UPDATE) (REVERSE SUBJECT) UTF-8 ALL") == [
        b'* ESEARCH (TAG "c3") UID'
    ]
    bob.ok(b"UID SEARCH RETURN (UPDATE) UNSEEN")
    # The watcher IDLEs; mail arrives by LMTP and wakes it with EXISTS and ADDTO.
    watcher.imap.send(b"i1 IDLE\r\n")
    assert watcher.line().startswith(b"+")
    _deliver(server, ALICE, "zz newest", "arrived while idling")
    heard = [watcher.line() for _ in range(4)]
    assert b"* 4 EXISTS" in heard, heard
    assert b'* ESEARCH (TAG "c2") UID ADDTO (0 4)' in heard, heard
    assert b'* ESEARCH (TAG "c3") UID ADDTO (1 4)' in heard, heard  # "zz" sorts first reversed
    # Another session of the same user reads one: the idling watcher hears REMOVEFROM.
    other.ok(b"UID STORE 2 +FLAGS.SILENT (\\Seen)")
    heard = [watcher.line() for _ in range(2)]
    assert b'* ESEARCH (TAG "c2") UID REMOVEFROM (0 2)' in heard, heard
    watcher.imap.send(b"DONE\r\n")
    assert watcher.line().startswith(b"i1 OK")
    # An expunge: REMOVEFROM from both live searches, each before the EXPUNGE.
    other.ok(b"UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.ok(b"UID EXPUNGE 1")
    noop = watcher.ok(b"NOOP")
    expunge = noop.index(b"* 1 EXPUNGE")
    assert noop.index(b'* ESEARCH (TAG "c2") UID REMOVEFROM (0 1)') < expunge, noop
    assert noop.index(b'* ESEARCH (TAG "c3") UID REMOVEFROM (4 1)') < expunge, noop
    # Bob, from the same address, heard nothing of Alice's mail.
    assert _esearch(bob.ok(b"NOOP")) == []
    watcher.ok(b'CANCELUPDATE "c2" "c3"')
    _deliver(server, ALICE, "after cancel", "quiet")
    assert _esearch(watcher.ok(b"NOOP")) == []
    for session in (watcher, other, bob):
        session.ok(b"LOGOUT")


def test_saved_results_and_previews(server: CryptmailServer) -> None:
    first, second = Session(server, ALICE), Session(server, ALICE)
    bob = Session(server, BOB)
    for session in (first, second, bob):
        session.ok(b"SELECT INBOX")
    first.ok(b"SEARCH RETURN (SAVE) SUBJECT newest")
    second.ok(b"SEARCH RETURN (SAVE) UNSEEN")
    bob.ok(b"SEARCH RETURN (SAVE) ALL")
    (fetched,) = first.ok(b"FETCH $ (PREVIEW)")
    assert fetched.endswith(b'PREVIEW "arrived while idling")'), fetched
    assert second.ok(b"FETCH $ (UID)") == [
        b"* 2 FETCH (UID 3)",
        b"* 3 FETCH (UID 4)",
        b"* 4 FETCH (UID 5)",
    ]
    # Never read by a session yet: LAZY may say NIL (not cached, and not cheap: a
    # decryption), PREVIEW makes it, and from then on LAZY has it too.
    text = b'* 1 FETCH (PREVIEW "bob\'s own")'
    assert bob.ok(b"FETCH $ (PREVIEW (LAZY))")[0] in (b"* 1 FETCH (PREVIEW NIL)", text)
    assert bob.ok(b"FETCH $ (PREVIEW)") == [text]
    assert bob.ok(b"FETCH $ (PREVIEW (LAZY))") == [text]
    for session in (first, second, bob):
        session.ok(b"LOGOUT")
