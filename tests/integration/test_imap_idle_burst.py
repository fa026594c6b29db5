"""IDLE through a burst of LMTP deliveries against a real `cryptmail serve`, with the
safety poll off: every wake-up comes from the change bus (worker pipe, then each
session's queue), so a change lost there would show as a session stuck short of the
final count. A queue or pipe that overflows coalesces into a rescan (store/_notify.py)
instead of dropping; here several sessions of two users idle at once, one of them not
reading at all until the burst is over."""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Iterator

import pytest

from imap.raw_client import RawClient

from .cryptmail_server import PASSWORD, CryptmailServer, make_users

pytestmark = pytest.mark.integration

ALICE, BOB = "alice@example.org", "bob@example.org"
SENDERS, EACH = 4, 40  # LMTP connections side by side, messages each


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CryptmailServer]:
    data_dir = tmp_path_factory.mktemp("idle-burst") / "data"
    make_users(data_dir, "example.org", {ALICE: 2, BOB: 2})
    # safety_poll_s = 0: IDLE never reads the mailbox on a timer of its own.
    serve = CryptmailServer(data_dir, imap=True, config="[events]\nsafety_poll_s = 0\n")
    serve.start(timeout=120)
    try:
        yield serve
    finally:
        serve.stop()


def _send(server: CryptmailServer, sender: int, failures: list[BaseException]) -> None:
    try:
        with smtplib.LMTP("127.0.0.1", server.port, timeout=120) as lmtp:
            for number in range(EACH):
                # Bob gets every fourth message, Alice all of them. One recipient a
                # transaction: smtplib reads one reply after DATA, LMTP sends one each.
                message = f"Subject: burst {sender}.{number}\r\n\r\nbody\r\n".encode()
                for rcpt in [ALICE, BOB] if number % 4 == 0 else [ALICE]:
                    lmtp.sendmail("sender@example.net", [rcpt], message)
    except BaseException as exc:  # reported by the test thread
        failures.append(exc)


def _idle(port: int, user: str) -> RawClient:
    client = RawClient.logged_in(port, user, PASSWORD, timeout=120)
    untagged, done = client.ask(b"SELECT INBOX")
    assert b" OK " in done and b"* 0 EXISTS" in untagged, untagged
    client.send(b"i1 IDLE\r\n")
    assert client.read().startswith(b"+")
    return client


def test_idle_sessions_hear_every_delivery_of_a_burst(server: CryptmailServer) -> None:
    total_alice, total_bob = SENDERS * EACH, SENDERS * EACH // 4
    sessions = [(_idle(server.imap_port, ALICE), total_alice) for _ in range(3)]
    sessions.append((_idle(server.imap_port, BOB), total_bob))
    failures: list[BaseException] = []
    senders = [threading.Thread(target=_send, args=(server, n, failures)) for n in range(SENDERS)]
    for thread in senders:
        thread.start()
    # The first session reads as the mail comes; the others only after the burst.
    first, expected = sessions[0]
    first.unsolicited(lambda line: line == b"* %d EXISTS" % expected, limit=10 * expected)
    for thread in senders:
        thread.join(300)
    assert failures == []
    for client, expected in sessions[1:]:
        last = b"* %d EXISTS" % expected
        seen = client.unsolicited(last.__eq__, limit=10 * expected)
        assert all(not line.startswith(b"* BYE") for line in seen)
    for client, _ in sessions:
        client.send(b"DONE\r\n")
        _, done = client.until(b"i1")  # a RECENT may follow the last EXISTS
        assert done.startswith(b"i1 OK"), done
        client.close()
