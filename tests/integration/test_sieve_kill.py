"""SIGKILL the LMTP workers and `cryptmail serve` while a real Postfix delivers through
users' Sieve scripts: fileinto role folders, fileinto :copy, redirect and redirect :copy
through a relay that records what it gets (tests/smtp_sink.py), vacation; every message
to four users at once. After Postfix's retries each copy is in each folder its script
named exactly once, none lost, and every redirect reached the relay.

A redirect the relay took is remembered before our 250 (delivery/_sieve_actions.py), so
the retry after a crash does not send it again; only a kill in the moment between the
relay's answer and that record's commit can repeat one, so the random test counts
repeats and the second test kills exactly in the window the record closes.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.db import create_engine
from cryptmail.sieve import ScriptLimits, put_script, set_active
from cryptmail.users import get_user
from smtp_sink import SmtpSink

from .conftest import PostfixFactory
from .cryptmail_server import CryptmailServer, db_url, make_users, read_all, store_check

SCRIPTS = {
    # Junk by subject (and stop), else a copy into Archive besides INBOX.
    "alice@example.org": (
        'require ["fileinto", "copy"];\n'
        'if header :contains "subject" "junk" { fileinto "Junk"; stop; }\n'
        'fileinto :copy "Archive";\n'
    ),
    "bob@example.org": 'require "copy";\nredirect :copy "bob@relay.test";\n',
    "carol@example.org": 'redirect "carol@relay.test";\n',
    "dave@example.org": (
        'require ["vacation", "fileinto"];\n'
        'vacation :days 1 :subject "Away" "Back soon.";\nfileinto "Archive";\n'
    ),
}
SENDERS = [f"s{n}@example.net" for n in range(5)]


def install_scripts(data_dir: Path, scripts: dict[str, str]) -> None:
    """Store and activate each user's script, as ManageSieve's PUTSCRIPT/SETACTIVE do."""

    async def run() -> None:
        engine = create_engine(db_url(data_dir))
        for email, text in scripts.items():
            async with engine.connect() as conn:
                user = await get_user(conn, email)
            await put_script(engine, user.id, "rules", text, ScriptLimits())
            await set_active(engine, user.id, "rules")
        await engine.dispose()

    asyncio.run(run())


def _message(index: int) -> bytes:
    subject = f"junk {index}" if index % 3 == 0 else f"note {index}"
    body = f"line {index} " * 30 + "\r\n"
    return (
        f"From: {SENDERS[index % len(SENDERS)]}\r\nTo: {', '.join(SCRIPTS)}\r\n"
        f"Subject: {subject}\r\nMessage-ID: <sk-{index}@example.net>\r\n\r\n"
        + body
        * (1 + index % 20)
    ).encode()


def _indices(messages: list[bytes]) -> Counter[int]:
    found: Counter[int] = Counter()
    for raw in messages:
        match = re.search(rb"Message-ID: <sk-(\d+)@example.net>", raw)
        assert match, "a stored or relayed message has no Message-ID: corrupt"
        index = int(match.group(1))
        assert raw.endswith(_message(index).split(b"\r\n\r\n", 1)[1]), f"{index} corrupt"
        found[index] += 1
    return found


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    started = SmtpSink(hold=frozenset({"two@relay.test"})).start()
    yield started
    started.stop()


def _server(tmp_path: Path, sink: SmtpSink, scripts: dict[str, str]) -> CryptmailServer:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", dict.fromkeys(scripts, 2))
    install_scripts(data_dir, scripts)
    config = f'[lmtp]\nprocesses = 2\n[sieve]\nsmtp_relay = "{sink.relay}"\n'
    server = CryptmailServer(data_dir, config=config)
    server.start(timeout=120)
    return server


def test_kills_during_sieve_deliveries(
    tmp_path: Path, postfix_factory: PostfixFactory, sink: SmtpSink
) -> None:
    count = 150
    server = _server(tmp_path, sink, SCRIPTS)
    postfix = postfix_factory(domains=["example.org"], lmtp=server.lmtp)
    rng = random.Random(7)  # test timing, not crypto
    done = threading.Event()

    def send_all() -> None:
        for index in range(count):
            sender = SENDERS[index % len(SENDERS)]
            postfix.send(_message(index), sender, list(SCRIPTS), via="smtp")
        done.set()

    sender = threading.Thread(target=send_all)
    sender.start()
    kills = 0
    try:
        # Each round: a while for the workers to start delivering, one worker killed
        # (serve starts another), then every worker and serve; serve starts again.
        for _ in range(5):
            if done.is_set() and postfix.queue_empty():
                break
            time.sleep(rng.uniform(1.5, 5.0))
            workers = server.worker_pids
            if workers:
                server.kill_worker(rng.choice(workers))
                kills += 1
            time.sleep(rng.uniform(0.3, 3.0))
            server.kill_all()
            kills += 1
            server.start(timeout=120)
        sender.join()
        postfix.flush()
        postfix.wait_queue_empty(timeout=120)
        folders = {user: read_all(server.data_dir, user) for user in SCRIPTS}
    finally:
        server.stop()
    everything = set(range(count))
    junk = {i for i in everything if i % 3 == 0}

    def exactly_once(messages: list[bytes], expected: set[int], where: str) -> None:
        found = _indices(messages)
        assert set(found) == expected, f"{where}: lost {sorted(expected - set(found))[:10]}"
        assert not [i for i, n in found.items() if n > 1], f"{where}: duplicated"

    alice, bob, carol, dave = (folders[u] for u in SCRIPTS)
    exactly_once(alice["Junk"], junk, "alice Junk")
    exactly_once(alice["INBOX"], everything - junk, "alice INBOX")
    exactly_once(alice["Archive"], everything - junk, "alice Archive")
    exactly_once(bob["INBOX"], everything, "bob INBOX")
    assert not any(carol.values()), "carol redirects everything and keeps nothing"
    exactly_once(dave["Archive"], everything, "dave Archive")
    assert not dave["INBOX"]

    relayed = sink.received()
    repeats = 0
    for target in ("bob@relay.test", "carol@relay.test"):
        got = _indices([m.data for m in relayed if m.recipients == (target,)])
        assert set(got) == everything, f"{target}: lost {sorted(everything - set(got))[:10]}"
        repeats += sum(n - 1 for n in got.values())
    replies = Counter(m.recipients for m in relayed if m.sender == "")
    assert all(n == 1 for n in replies.values()), f"vacation sent twice: {replies}"
    assert all(m.sender == "" or "relay.test" in m.recipients[0] for m in relayed)
    print(
        f"\nsieve kill test: {count} messages x {len(SCRIPTS)} users, {kills} SIGKILLs, "
        f"{repeats} redirects repeated, {len(replies)} of {len(SENDERS)} senders answered"
    )
    check = store_check(server.data_dir, grace_s=0)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_redirect_sent_before_a_kill_is_not_sent_again(
    tmp_path: Path, postfix_factory: PostfixFactory, sink: SmtpSink
) -> None:
    """The first redirect goes out and is remembered; the relay holds the second one's
    DATA unanswered while everything is SIGKILLed, so our 250 never went out and Postfix
    sends the message again: the first redirect must not go twice, the second must go."""
    script = 'redirect "one@relay.test";\nredirect "two@relay.test";\n'
    server = _server(tmp_path, sink, {"erin@example.org": script})
    postfix = postfix_factory(domains=["example.org"], lmtp=server.lmtp)
    try:
        postfix.send(_message(1), SENDERS[1], ["erin@example.org"], via="smtp")
        sink.wait(lambda s: s.held == 1, timeout=60)
        server.kill_all()
        sink.drop_held()
        server.start(timeout=120)
        postfix.flush()
        postfix.wait_queue_empty(timeout=60)
    finally:
        server.stop()
    got = Counter(m.recipients[0] for m in sink.received())
    assert got == {"one@relay.test": 1, "two@relay.test": 1}
    assert not any(read_all(server.data_dir, "erin@example.org").values())
