"""Sieve at delivery end to end: real Postfix in front of `cryptmail serve`, and the same
Postfix as the relay that carries vacation replies back in. Global scripts (the
ISPmail Junk filing after, a vacation before) for several users at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import PostfixFactory
from .cryptmail_server import CryptmailServer, make_users, read_all, store_check
from .servers import free_port

USERS = ["alice@example.org", "bob@example.org", "carol@example.org"]
BEFORE = 'require "vacation";\nvacation :days 1 :subject "Away" "Back on Monday.";\n'
AFTER = (
    'require ["fileinto"];\nif header :contains "X-Spam" "Yes" {\n  fileinto "Junk";\n  stop;\n}\n'
)


def _message(sender: str, to: str, n: int, spam: bool) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: note {n}\r\nMessage-ID: <{n}.{to}>\r\n"
        + ("X-Spam: Yes\r\n" if spam else "")
        + f"\r\nbody {n}\r\n"
    ).encode()


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def server(tmp_path: Path, smtp_port: int) -> Iterator[CryptmailServer]:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {u: 2 if u != "carol@example.org" else 0 for u in USERS})
    (tmp_path / "before.sieve").write_text(BEFORE)
    (tmp_path / "after.sieve").write_text(AFTER)
    config = (
        f'[sieve]\nbefore = "{tmp_path}/before.sieve"\nafter = "{tmp_path}/after.sieve"\n'
        f'smtp_relay = "127.0.0.1:{smtp_port}"\n'
    )
    served = CryptmailServer(data_dir, config=config)
    served.start(timeout=120)  # a loaded machine starts the LMTP workers slowly
    yield served
    served.stop()


def _wait_for(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError("the mail did not arrive in time")


def test_junk_filing_and_vacation_through_postfix(
    server: CryptmailServer, postfix_factory: PostfixFactory, smtp_port: int
) -> None:
    postfix = postfix_factory(domains=["example.org"], lmtp=server.lmtp, smtp_port=smtp_port)
    # Every user writes to every other one, ham and spam, several sessions at once.
    sends = [
        (sender, to, n, spam)
        for n, (sender, to) in enumerate((s, t) for s in USERS for t in USERS if s != t)
        for spam in (False, True)
    ]
    with ThreadPoolExecutor(6) as pool:
        list(
            pool.map(
                lambda a: postfix.send(_message(a[0], a[1], a[2] * 2 + a[3], a[3]), a[0], [a[1]]),
                sends,
            )
        )
    postfix.wait_queue_empty(timeout=60)

    def replies(user: str) -> list[bytes]:
        return [m for m in read_all(server.data_dir, user)["INBOX"] if b"Subject: Away" in m]

    # Each user got a ham and a spam from each of the two others; each answered each
    # sender once (:days 1), and the replies themselves (Auto-Submitted) got no reply.
    _wait_for(lambda: all(len(replies(u)) == 2 for u in USERS))
    postfix.wait_queue_empty(timeout=60)
    for user in USERS:
        folders = read_all(server.data_dir, user)
        inbox = [m for m in folders["INBOX"] if b"Subject: Away" not in m]
        assert len(inbox) == 2 and all(b"X-Spam" not in m for m in inbox)
        assert len(folders["Junk"]) == 2 and all(b"X-Spam: Yes" in m for m in folders["Junk"])
        got = replies(user)
        assert len(got) == 2
        assert all(b"Auto-Submitted: auto-replied" in m for m in got)
        assert all(b"Back on Monday." in m for m in got)
    assert store_check(server.data_dir).returncode == 0
