"""POP3 on a live `cryptmail serve`: mail delivered over LMTP (through the worker
processes) is listed and retrieved byte-exact with poplib, UIDLs stay across sessions,
and a QUIT that expunges is seen by an IMAP session waiting in IDLE."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cryptmail_server import PASSWORD, CryptmailServer, make_users, read_all

pytestmark = pytest.mark.integration

ALICE, BOB = "alice@example.org", "bob@example.org"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CryptmailServer]:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {ALICE: 2, BOB: 0})
    served = CryptmailServer(data_dir, imap=True, pop3=True)
    served.start()
    yield served
    served.stop()


def _deliver(server: CryptmailServer, to: str, subject: str) -> bytes:
    message = f"From: x@example.net\r\nSubject: {subject}\r\n\r\n.dot line\r\nbody\r\n".encode()
    with smtplib.LMTP("127.0.0.1", server.port) as lmtp:
        lmtp.sendmail("x@example.net", [to], message)
    return message


def _pop(server: CryptmailServer, user: str) -> poplib.POP3:
    pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=30)
    pop.user(user)
    pop.pass_(PASSWORD)
    return pop


def test_pop3_reads_and_deletes_what_imap_then_sees(server: CryptmailServer) -> None:
    sent = [_deliver(server, ALICE, f"m{n}") for n in range(3)]
    _deliver(server, BOB, "plain")
    pop = _pop(server, ALICE)
    count, octets = pop.stat()
    got = [b"\r\n".join(pop.retr(n)[1]) + b"\r\n" for n in range(1, count + 1)]
    # What delivery stored (its trace headers added before the message), byte-exact.
    assert got == read_all(server.data_dir, ALICE)["INBOX"]
    assert [g.endswith(m) for g, m in zip(got, sent, strict=True)] == [True] * 3
    assert octets == sum(len(g) for g in got)
    ids = pop.uidl()[1]
    pop.quit()
    bob = _pop(server, BOB)  # a crypt=0 user, in parallel with alice's IMAP below
    assert bob.stat()[0] == 1

    imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
    imap.login(ALICE, PASSWORD)
    imap.select("INBOX")
    _, flags = imap.fetch("1:*", "(FLAGS)")
    assert all(b"\\Seen" in f for f in flags if isinstance(f, bytes))  # RETR marked them
    imap.send(b"i1 IDLE\r\n")
    assert imap.readline().startswith(b"+")

    pop = _pop(server, ALICE)
    assert pop.uidl()[1] == ids  # stable across sessions
    pop.dele(2)
    assert pop.quit() == b"+OK Logging out, 1 messages deleted."
    assert imap.readline() == b"* 2 EXPUNGE\r\n"
    imap.send(b"DONE\r\n")
    assert imap.readline().startswith(b"i1 OK")
    imap.logout()
    bob.quit()

    assert read_all(server.data_dir, ALICE)["INBOX"] == [got[0], got[2]]
    pop = _pop(server, ALICE)
    assert pop.uidl()[1] == [b"1 " + ids[0].split()[1], b"2 " + ids[2].split()[1]]
    pop.quit()
