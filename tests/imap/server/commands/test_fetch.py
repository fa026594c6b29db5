# mypy: disable-error-code="index, operator, arg-type, assignment, union-attr"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""FETCH over many messages on a live server: blob heads read ahead in batches, responses
joined into few socket writes, and unreadable messages left out with NO [CORRUPTION]
while every other message arrives byte-exact and nothing stored changes."""

from __future__ import annotations

import hashlib
import imaplib
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from cryptmail.db import tables as t
from cryptmail.imap.server._readahead import BATCH
from cryptmail.store import BlobId

from ...server_rig import PASSWORD, USER, ImapRig, start_rig

COUNT = 2 * BATCH + 5  # three read-ahead batches, the last one short
BIG = 40  # one message streams in pieces in the middle of the run


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _message(index: int) -> bytes:
    body = b"line %d of a message\r\n" % index * (20_000 if index == BIG else 40)
    return b"Subject: m%d\r\nMessage-ID: <m%d@example.org>\r\n\r\n%s" % (index, index, body)


def _blob_paths(rig: ImapRig) -> list[Path]:
    async def query() -> list[bytes]:
        async with rig.engine.connect() as conn:
            rows = await conn.execute(select(t.cm_messages.c.blob_id).order_by(t.cm_messages.c.uid))
            return [bytes(r.blob_id) for r in rows]

    return [rig.blobs.path_of(BlobId(b)) for b in rig.run(query())]


def _bodies(data: list[object]) -> dict[int, bytes]:
    found = {}
    for item in data:
        if isinstance(item, tuple):
            found[int(re.match(rb"(\d+) ", item[0]).group(1))] = item[1]
    return found


def _digests(paths: list[Path]) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.exists()}


def test_fetch_of_many_messages_is_byte_exact_and_in_order(rig: ImapRig) -> None:
    messages = [_message(i) for i in range(1, COUNT + 1)]
    for data in messages:
        rig.deliver(data)
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(USER, PASSWORD)
    imap.select("INBOX", readonly=True)
    typ, data = imap.fetch("1:*", "(UID BODY.PEEK[])")
    assert typ == "OK"
    headers = [item[0] for item in data if isinstance(item, tuple)]
    assert [int(h.split(b" ", 1)[0]) for h in headers] == list(range(1, COUNT + 1))
    assert _bodies(data) == dict(enumerate(messages, start=1))
    # A sparse set: the heads read ahead are those of the messages asked for.
    typ, data = imap.fetch(f"{COUNT},2,{BATCH + 3},1:3", "(BODY.PEEK[HEADER] RFC822.TEXT)")
    assert typ == "OK"
    literals = [item for item in data if isinstance(item, tuple)]
    numbers = [1, 2, 3, BATCH + 3, COUNT]
    assert [int(item[0].split(b" ", 1)[0]) for item in literals[::2]] == numbers
    pairs = zip(literals[::2], literals[1::2], strict=True)
    for number, (header, text) in zip(numbers, pairs, strict=True):
        head, _, body = messages[number - 1].partition(b"\r\n\r\n")
        assert (header[1], text[1]) == (head + b"\r\n\r\n", body)
    imap.logout()


def test_unreadable_messages_are_left_out_and_the_rest_arrive(rig: ImapRig) -> None:
    messages = [_message(i) for i in range(1, COUNT + 1)]
    for data in messages:
        rig.deliver(data)
    paths = _blob_paths(rig)
    missing, tampered = 3, BATCH + 2  # one in the first batch, one in the second
    paths[missing - 1].unlink()
    raw = bytearray(paths[tampered - 1].read_bytes())
    raw[-5] ^= 0x01
    paths[tampered - 1].write_bytes(bytes(raw))
    before = _digests(paths)

    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(USER, PASSWORD)
    imap.select("INBOX")
    typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
    assert typ == "NO"
    assert b"[CORRUPTION]" in data[0]
    bodies = _bodies(imap.untagged_responses.pop("FETCH"))
    wanted = {i: m for i, m in enumerate(messages, start=1) if i not in (missing, tampered)}
    assert bodies == wanted
    typ, _ = imap.noop()  # the connection lives on
    assert typ == "OK"
    typ, data = imap.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == messages[0]
    imap.logout()
    assert _digests(paths) == before


def _big(user: int, index: int, size: int) -> bytes:
    # Bytes that differ per user and message, so a body sent to the wrong session shows.
    seed = hashlib.sha256(b"%d/%d" % (user, index)).hexdigest().encode()
    lines = (size // 78) + 1
    body = b"".join(seed[:64] + b" %010d\r\n" % n for n in range(lines))
    return b"Subject: big %d/%d\r\nMessage-ID: <b%d.%d@example.org>\r\n\r\n%s" % (
        user, index, user, index, body,
    )  # fmt: skip


def test_big_bodies_are_byte_exact_for_several_users_reading_at_once(rig: ImapRig) -> None:
    # Sizes around the read-ahead's limits: read whole with their batch (4 KB to 900 KB,
    # more than one batch's budget in all), and past WHOLE_BELOW, streamed by range.
    sizes = [4_000, 200_000, 200_000, 200_000, 900_000, 200_000, 1_300_000, 200_000, 70_000]
    users = [USER, "bob@example.org", "carol@example.org"]
    for email in users[1:]:
        rig.add_user(email, PASSWORD)
    sent = {
        email: [_big(u, i, size) for i, size in enumerate(sizes)] for u, email in enumerate(users)
    }
    for email, messages in sent.items():
        for data in messages:
            rig.deliver(data, email)

    def read(email: str, session: int) -> None:
        imap = imaplib.IMAP4("127.0.0.1", rig.port)
        imap.login(email, PASSWORD)
        imap.select("INBOX", readonly=True)
        for _ in range(2):  # the first pass indexes, the second reads cached facts
            typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
            assert typ == "OK"
            assert _bodies(data) == dict(enumerate(sent[email], start=1)), (email, session)
        typ, data = imap.fetch("2:*", "(BODY.PEEK[TEXT]<1000.150000>)")
        assert typ == "OK"
        expected = {
            n: m.partition(b"\r\n\r\n")[2][1000:151_000]
            for n, m in enumerate(sent[email], start=1)
            if n >= 2
        }
        assert _bodies(data) == expected
        imap.logout()

    with ThreadPoolExecutor(len(users) * 3) as pool:
        futures = [pool.submit(read, email, s) for email in users for s in range(3)]
        for future in futures:
            future.result()
