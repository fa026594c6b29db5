"""NOTIFY (RFC 5465) and IMAP4rev2 against a real `cryptmail serve`, mail arriving over
LMTP from the worker processes: two users, several sessions each, one client address.

Alice watches her INBOX (selected) and every folder (personal) in two sessions, one of
them in IMAP4rev2; her third session flags, moves, expunges and creates; LMTP delivers
ham to her INBOX and spam that the Sieve "after" script files into Junk. Bob watches his
own folders and hears nothing of Alice's. Every client is a plain socket reading lines,
so unsolicited responses are seen exactly as sent, between commands."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imap.raw_client import RawClient

from .cryptmail_server import PASSWORD, CryptmailServer, make_users

pytestmark = pytest.mark.integration

ALICE, BOB = "alice@example.org", "bob@example.org"
SIEVE = 'require ["fileinto"];\nif header :contains "X-Spam" "Yes" {\n  fileinto "Junk";\n}\n'


def _client(port: int, user: str) -> RawClient:
    return RawClient.logged_in(port, user, PASSWORD, timeout=60)


def _until(client: RawClient, last: Callable[[bytes], bool]) -> list[bytes]:
    """Unsolicited responses up to the first `last` accepts (RECENT, a rev1 extra, is
    skipped)."""
    return client.unsolicited(
        last, normalize=lambda line: None if line.endswith(b" RECENT") else line
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CryptmailServer]:
    root = tmp_path_factory.mktemp("notify")
    data_dir = root / "data"
    make_users(data_dir, "example.org", {ALICE: 2, BOB: 2})
    (root / "after.sieve").write_text(SIEVE)
    serve = CryptmailServer(data_dir, imap=True, config=f'[sieve]\nafter = "{root}/after.sieve"\n')
    serve.start(timeout=120)
    try:
        yield serve
    finally:
        serve.stop()


def _deliver(server: CryptmailServer, user: str, subject: str, spam: bool = False) -> None:
    message = (
        f"From: sender@example.net\r\nTo: {user}\r\nSubject: {subject}\r\n"
        + ("X-Spam: Yes\r\n" if spam else "")
        + "\r\nbody\r\n"
    ).encode()
    with smtplib.LMTP("127.0.0.1", server.port, timeout=60) as lmtp:
        lmtp.sendmail("sender@example.net", [user], message)


def test_notify_across_sessions_users_and_lmtp(server: CryptmailServer, tmp_path: Path) -> None:
    port = server.imap_port
    watcher, modern, actor = _client(port, ALICE), _client(port, ALICE), _client(port, ALICE)
    bob = _client(port, BOB)
    watch = (
        b"NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]) "
        b"MessageExpunge FlagChange)) (PERSONAL (MessageNew MessageExpunge MailboxName))"
    )
    watcher.ask(b"SELECT INBOX")
    assert b" OK " in watcher.ask(watch)[1]
    _, done = modern.ask(b"ENABLE IMAP4rev2")
    modern.ask(b"SELECT INBOX")
    assert b" OK " in modern.ask(watch)[1]
    untagged, done = bob.ask(b"NOTIFY SET STATUS (PERSONAL (MessageNew MessageExpunge))")
    assert b" OK " in done and any(x.startswith(b"* STATUS INBOX (MESSAGES 0 ") for x in untagged)

    # Ham over LMTP: EXISTS, then the FETCH asked for, to both of Alice's watchers.
    _deliver(server, ALICE, "ham one")
    for client in (watcher, modern):
        got = _until(client, lambda line: b" FETCH " in line)
        assert got[0] == b"* 1 EXISTS", got
        assert got[-1].startswith(b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {")
        assert b"Subject: ham one" in got[-1]
    # Spam: Sieve files it into Junk, a mailbox not selected: a STATUS.
    _deliver(server, ALICE, "spam one", spam=True)
    for client in (watcher, modern):
        got = _until(client, lambda line: line.startswith(b"* STATUS Junk "))
        assert b"MESSAGES 1 " in got[-1] and b"UIDNEXT 2 " in got[-1], got

    # Another session flags and moves the message away.
    actor.ask(b"SELECT INBOX")
    actor.ask(b"UID STORE 1 +FLAGS (\\Flagged)")
    got = _until(watcher, lambda line: b"FLAGS" in line)
    assert got[-1].startswith(b"* 1 FETCH (UID 1 FLAGS (\\Flagged")
    got = _until(modern, lambda line: b"FLAGS" in line)
    assert got[-1] == b"* 1 FETCH (UID 1 FLAGS (\\Flagged))", "rev2: no \\Recent"
    _, done = actor.ask(b"UID MOVE 1 Archive")
    assert b" OK " in done
    for client in (watcher, modern):
        got = _until(client, lambda line: line == b"* 1 EXPUNGE")
        rest = _until(client, lambda line: line.startswith(b"* STATUS Archive "))
        assert b"MESSAGES 1 " in rest[-1]
    # A folder created elsewhere: a LIST.
    actor.ask(b"CREATE Projects")
    for client in (watcher, modern):
        got = _until(client, lambda line: line.startswith(b"* LIST "))
        assert got[-1] == b'* LIST (\\HasNoChildren) "/" Projects'

    # Bob heard nothing of all that: his first notification is his own mail.
    _deliver(server, BOB, "for bob")
    got = _until(bob, lambda line: line.startswith(b"* STATUS "))
    assert got == [got[-1]] and got[-1].startswith(b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 ")

    # Refusals change nothing: the watch stays in force.
    _, done = bob.ask(b"NOTIFY SET (PERSONAL (MessageNew))")
    assert b" BAD " in done
    _, done = bob.ask(b"NOTIFY SET (PERSONAL (AnnotationChange MessageNew MessageExpunge))")
    assert b" NO [BADEVENT (" in done
    _, done = bob.ask(b"NOTIFY SET (MAILBOXES (" + b" ".join(b"f%d" % i for i in range(5000))
                      + b") (MessageNew MessageExpunge))")  # fmt: skip
    assert b" NO [NOTIFICATIONOVERFLOW] " in done
    _deliver(server, BOB, "for bob again")
    got = _until(bob, lambda line: line.startswith(b"* STATUS "))
    assert got[-1].startswith(b"* STATUS INBOX (MESSAGES 2 UIDNEXT 3 ")

    # IDLE under NOTIFY sends what NOTIFY asked for.
    bob.send(b"i1 IDLE\r\n")
    assert bob.read().startswith(b"+")
    _deliver(server, BOB, "in idle")
    got = _until(bob, lambda line: line.startswith(b"* STATUS "))
    assert got[-1].startswith(b"* STATUS INBOX (MESSAGES 3 ")
    bob.send(b"DONE\r\n")
    assert bob.read().startswith(b"i1 OK")
    for client in (watcher, modern, actor, bob):
        client.close()
