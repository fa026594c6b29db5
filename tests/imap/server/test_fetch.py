# mypy: disable-error-code="index, operator, arg-type, assignment, union-attr"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""New messages: claimed at SELECT without being read, indexed in batches by FETCH.

Delivery has only the public key, so the first session that unlocks it gives each new
message its first flags (at SELECT, one statement for all) and the first FETCH that
needs it fills its sealed cache. A batch reads its blobs in one round trip and saves its
caches in one transaction; a big message and an unreadable one are indexed alone, and
the unreadable one stays unindexed without stopping the others."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import ColumnElement, select

import cryptmail.crypto._stream as stream_module
from cryptmail.db import tables as t
from cryptmail.imap.server._fetch import INDEX_BATCH
from cryptmail.store import HEAD_SIZE, BlobId

from ..server_rig import PASSWORD, USER, ImapRig, start_rig
from .commands.test_fetch import _bodies

COUNT = INDEX_BATCH + 6
BIG, BROKEN = 5, INDEX_BATCH + 2  # a blob over HEAD_SIZE; a blob with a flipped bit


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _message(index: int) -> bytes:
    lines = HEAD_SIZE // 20 + 100 if index == BIG else 3
    body = b"line %d of the body\r\n" % index * lines
    return (
        b"From: Bob <bob@example.org>\r\nSubject: message %d\r\n"
        b"Message-ID: <m%d@example.org>\r\n\r\n%s" % (index, index, body)
    )


def _fill(rig: ImapRig) -> list[bytes]:
    messages = [_message(i) for i in range(1, COUNT + 1)]
    for data in messages:
        rig.deliver(data)
    blob_id = _column(rig, t.cm_messages.c.blob_id)[BROKEN - 1]
    path = rig.blobs.path_of(BlobId(bytes(blob_id)))
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01
    path.write_bytes(bytes(raw))
    return messages


def _column(rig: ImapRig, column: ColumnElement[Any]) -> list[Any]:
    async def query() -> list[Any]:
        async with rig.engine.connect() as conn:
            rows = await conn.execute(select(column).order_by(t.cm_messages.c.uid))
            return [row[0] for row in rows]

    return rig.run(query())


def _unindexed(rig: ImapRig) -> list[int]:
    caches = _column(rig, t.cm_messages.c.cache_sealed)
    return [uid for uid, cache in enumerate(caches, start=1) if cache is None]


def _login(rig: ImapRig) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(USER, PASSWORD)
    return imap


def _unclaimed(rig: ImapRig) -> list[int]:
    flags = _column(rig, t.cm_messages.c.flags_sealed)
    return [uid for uid, sealed in enumerate(flags, start=1) if sealed is None]


def test_select_claims_new_messages_and_a_fetch_indexes_them_past_a_broken_one(
    rig: ImapRig,
) -> None:
    messages = _fill(rig)
    assert len(_unindexed(rig)) == COUNT
    imap = _login(rig)
    typ, data = imap.select("INBOX")
    assert typ == "OK" and data == [b"%d" % COUNT]
    assert imap.untagged_responses["RECENT"] == [b"%d" % COUNT]
    # SELECT gave every message its first flags and read no blob.
    assert _unclaimed(rig) == [] and len(_unindexed(rig)) == COUNT
    typ, data = imap.fetch("1:*", "(RFC822.SIZE BODY.PEEK[])")
    assert typ == "NO"
    bodies = _bodies(imap.untagged_responses.pop("FETCH"))
    assert bodies == {i: m for i, m in enumerate(messages, start=1) if i != BROKEN}
    assert _unindexed(rig) == [BROKEN]
    typ, data = imap.fetch(f"{BIG}", "(BODYSTRUCTURE ENVELOPE)")
    assert typ == "OK" and b'"message 5"' in data[0]
    imap.logout()
    # The next session finds them all claimed: none is new to it, the unreadable one
    # included, which stays unindexed until it is restored.
    imap = _login(rig)
    typ, data = imap.select("INBOX")
    assert typ == "OK" and imap.untagged_responses["RECENT"] == [b"0"]
    imap.logout()
    assert _unindexed(rig) == [BROKEN]


def test_a_fetch_in_examine_indexes_in_batches_and_leaves_flags_alone(rig: ImapRig) -> None:
    messages = _fill(rig)
    imap = _login(rig)
    imap.select("INBOX", readonly=True)
    assert len(_unindexed(rig)) == COUNT  # EXAMINE reads nothing at SELECT
    typ, _ = imap.fetch("1:*", "(BODY.PEEK[HEADER])")
    assert typ == "NO"
    headers = _bodies(imap.untagged_responses.pop("FETCH"))
    wanted = {i: m.partition(b"\r\n\r\n")[0] + b"\r\n\r\n" for i, m in enumerate(messages, 1)}
    del wanted[BROKEN]
    assert headers == wanted
    assert _unindexed(rig) == [BROKEN]
    imap.logout()
    imap = _login(rig)
    imap.select("INBOX")  # the first read-write session still sees them all as new
    assert imap.untagged_responses["RECENT"] == [b"%d" % COUNT]
    imap.logout()


def test_a_warm_fetch_derives_no_key(rig: ImapRig, monkeypatch: pytest.MonkeyPatch) -> None:
    # The caches written by indexing hold each blob's payload key: a later session reads
    # the bodies with neither the EC unwrap nor the HKDF.
    messages = [_message(i) for i in range(1, 9)]
    for data in messages:
        rig.deliver(data)
    imap = _login(rig)
    imap.select("INBOX")
    imap.fetch("1:*", "BODY.PEEK[]")  # the first read indexes them
    imap.logout()
    derived: list[bytes] = []
    original = stream_module._derive_payload

    def counting(message_key: bytes, blob_id: bytes, header_digest: bytes) -> bytes:
        derived.append(blob_id)
        return original(message_key, blob_id, header_digest)

    monkeypatch.setattr(stream_module, "_derive_payload", counting)
    imap = _login(rig)
    imap.select("INBOX")
    typ, data = imap.fetch("1:*", "BODY.PEEK[]")
    assert typ == "OK"
    assert _bodies(data) == dict(enumerate(messages, start=1))
    typ, data = imap.fetch("3", "BODY.PEEK[1]<2.10>")
    assert typ == "OK" and data[0][1] == messages[2].partition(b"\r\n\r\n")[2][2:12]
    imap.logout()
    assert derived == []
