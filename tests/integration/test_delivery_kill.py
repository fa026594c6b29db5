"""SIGKILL `cryptmail serve` again and again while a real Postfix delivers to it.

At the end every message is in the store exactly once (checked by Message-ID with the
password), none corrupt, and `store check --fix` is clean. LMTP itself cannot rule out
one kind of duplicate by itself (the row committed, the process died before the 250 went
out, so Postfix sends again); the store's delivery tag recognises such a retry, so the
test demands zero duplicates.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from .conftest import PostfixFactory
from .cryptmail_server import CryptmailServer, make_users, read_all, store_check


def _message(index: int) -> bytes:
    filler = f"line {index} " * 40
    return (
        f"From: s@example.net\r\nTo: alice@example.org\r\nSubject: kill {index}\r\n"
        f"Message-ID: <kill-{index}@example.net>\r\n\r\n" + (filler + "\r\n") * (1 + index % 50)
    ).encode()


def _run(tmp_path: Path, postfix_factory: PostfixFactory, count: int) -> None:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {"alice@example.org": 2})
    server = CryptmailServer(data_dir)
    server.start()
    postfix = postfix_factory(domains=["example.org"], lmtp=server.lmtp)
    rng = random.Random(1)  # test timing, not crypto
    # Enough kills to land in every phase of a delivery many times, few enough that the
    # default run stays within the suite's time budget.
    max_kills = max(60, count // 6)
    done = threading.Event()

    def send_all() -> None:
        for index in range(count):
            postfix.send(_message(index), "s@example.net", ["alice@example.org"], via="smtp")
        done.set()

    sender = threading.Thread(target=send_all)
    sender.start()
    kills = 0
    try:
        while (not done.is_set() or not postfix.queue_empty()) and kills < max_kills:
            time.sleep(rng.uniform(0.05, 0.4))
            server.kill()
            kills += 1
            server.start()
        sender.join()
        postfix.flush()
        postfix.wait_queue_empty(timeout=180)
        messages = read_all(data_dir, "alice@example.org")["INBOX"]
    finally:
        server.stop()
    ids: Counter[int] = Counter()
    for raw in messages:
        found = re.search(rb"Message-ID: <kill-(\d+)@example.net>", raw)
        assert found, "a stored message has no Message-ID: corrupt"
        index = int(found.group(1))
        assert raw.endswith(_message(index).split(b"\r\n\r\n", 1)[1]), f"message {index} corrupt"
        ids[index] += 1
    lost = sorted(set(range(count)) - set(ids))
    duplicated = {i: n for i, n in ids.items() if n > 1}
    print(
        f"\nkill test: {count} messages, {kills} SIGKILLs, {len(messages)} stored, "
        f"lost {len(lost)}, duplicated {len(duplicated)}"
    )
    assert not lost, f"lost messages: {lost[:20]}"
    assert not duplicated, f"duplicated messages: {duplicated}"
    # The server is stopped: any orphan left by a kill is safe to remove now.
    check = store_check(data_dir, grace_s=0)
    assert check.returncode == 0, check.stdout + check.stderr


def test_kill_during_deliveries(tmp_path: Path, postfix_factory: PostfixFactory) -> None:
    _run(tmp_path, postfix_factory, 1000)


@pytest.mark.slow
def test_kill_during_deliveries_long(tmp_path: Path, postfix_factory: PostfixFactory) -> None:
    _run(tmp_path, postfix_factory, int(os.environ.get("CRYPTMAIL_KILL_COUNT", "5000")))
