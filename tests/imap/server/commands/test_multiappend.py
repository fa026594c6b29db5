"""MULTIAPPEND (RFC 3502) over a live server: all messages or none, APPENDUID with a
set, refusals mid-command, two sessions appending at once."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.users import get_user, set_quota

from ...raw_client import RawClient
from ...server_rig import USER, ImapRig, start_rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path, **{"imap.append_limit": 100_000})


def _client(rig: ImapRig) -> RawClient:
    client = RawClient.connect(rig.port)
    client.login()
    return client


def _multiappend(client: RawClient, box: bytes, parts: list[tuple[bytes, bytes]]) -> bytes:
    """APPEND box with each (flags-and-date prefix, message), non-synchronizing literals."""
    tag = client.next_tag()
    line = tag + b" APPEND " + box
    for prefix, message in parts:
        line += b" " + prefix + b"{%d+}\r\n" % len(message) + message
    client.send(line + b"\r\n")
    return client.until(tag)[1]


def _count(client: RawClient, box: bytes = b"INBOX") -> int:
    untagged, _ = client.ask(b"STATUS " + box + b" (MESSAGES)")
    found = re.search(rb"MESSAGES (\d+)", untagged[0])
    assert found is not None
    return int(found.group(1))


def test_three_messages_in_one_command(rig: ImapRig) -> None:
    client = _client(rig)
    done = _multiappend(
        client,
        b"Archive",
        [
            (b"(\\Seen) ", b"Subject: one\r\n\r\n1\r\n"),
            (b'"01-Feb-2024 10:00:00 +0100" ', b"Subject: two\r\n\r\n2\r\n"),
            (b'($Work \\Flagged) "02-Feb-2024 10:00:00 +0000" ', b"Subject: three\r\n\r\n3\r\n"),
        ],
    )
    found = re.search(rb"OK \[APPENDUID (\d+) 1:3\]", done)
    assert found is not None, done
    client.ask(b"EXAMINE Archive")
    untagged, _ = client.ask(b"FETCH 1:3 (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"\\Seen" in untagged[0] and b"one" in untagged[0]
    assert b'"01-Feb-2024 09:00:00 +0000"' in untagged[1] and b"two" in untagged[1]
    assert b"$Work" in untagged[2] and b"\\Flagged" in untagged[2]


@pytest.mark.parametrize(
    "tail",
    [
        b' ("bad date") {3+}\r\nx\r\n',  # a malformed third message
        b" trailing-garbage",  # junk after the last literal
        b" {200000+}\r\n" + b"x" * 200_000,  # over APPENDLIMIT
    ],
    ids=["bad-third", "garbage", "toobig-third"],
)
def test_a_bad_message_stores_none(rig: ImapRig, tail: bytes) -> None:
    client = _client(rig)
    tag = client.next_tag()
    first, second = b"Subject: a\r\n\r\na\r\n", b"Subject: b\r\n\r\nb\r\n"
    client.send(
        tag + b" APPEND INBOX {%d+}\r\n" % len(first) + first
        + b" {%d+}\r\n" % len(second) + second + tail + b"\r\n"
    )  # fmt: skip
    _, done = client.until(tag)
    assert b" OK " not in done, done
    assert b" BAD " in done or b"NO [TOOBIG]" in done, done
    assert _count(client) == 0
    _, done = client.ask(b"NOOP")  # the connection reads on
    assert b" OK " in done


def test_quota_counts_the_whole_command(rig: ImapRig) -> None:
    async def work() -> None:
        async with rig.engine.begin() as conn:
            await set_quota(conn, (await get_user(conn, USER)).id, 12 * 1024)

    rig.run(work())  # 12 KiB: room for two padded messages, not four
    client = _client(rig)
    body = b"Subject: q\r\n\r\n" + b"x" * 3000 + b"\r\n"
    done = _multiappend(client, b"INBOX", [(b"", body)] * 4)
    assert b"NO [OVERQUOTA]" in done, done
    assert _count(client) == 0


def test_two_sessions_at_once(rig: ImapRig) -> None:
    results: list[bytes] = []

    def session(name: bytes) -> None:
        client = _client(rig)
        parts = [(b"", b"Subject: %s %d\r\n\r\nbody\r\n" % (name, n)) for n in range(20)]
        results.append(_multiappend(client, b"INBOX", parts))
        client.close()

    threads = [threading.Thread(target=session, args=(n,)) for n in (b"a", b"b", b"c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    uids: list[int] = []
    for done in results:
        found = re.search(rb"OK \[APPENDUID \d+ (\d+):(\d+)\]", done)
        assert found is not None, done  # each command's 20 rows are one run of UIDs
        low, high = int(found.group(1)), int(found.group(2))
        assert high - low == 19
        uids += range(low, high + 1)
    assert sorted(uids) == list(range(1, 61))
    assert _count(_client(rig)) == 60


def test_capability_names_multiappend(rig: ImapRig) -> None:
    untagged, _ = _client(rig).ask(b"CAPABILITY")
    assert b"MULTIAPPEND" in untagged[0].split()
