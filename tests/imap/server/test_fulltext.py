"""The search index inside a live server (in-process, imaplib): once the background pass
has indexed the mailbox, single-word searches are answered without reading a message;
messages it cannot read stay on the slow path; the pass stops with the last session."""

from __future__ import annotations

import imaplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cryptmail.db import tables as t
from cryptmail.imap.server import _fulltext
from cryptmail.imap.server._listener import _FULLTEXT
from cryptmail.store import BlobId

from ..server_rig import PASSWORD, USER, ImapRig, start_rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path, **{"imap.fts_background_percent": 100})


def _message(i: int) -> bytes:
    word = "Quokka" if i % 4 == 1 else "wombat"
    return f"From: a{i}@example.net\r\nSubject: s{i}\r\n\r\nA {word} number{i} here.\r\n".encode()


def _login(rig: ImapRig) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", rig.port)
    client.login(USER, PASSWORD)
    client.select("INBOX")
    return client


def _search(client: imaplib.IMAP4, *criteria: str) -> list[int]:
    status, data = client.uid("SEARCH", *criteria)
    assert status == "OK", data
    return sorted(int(n) for n in data[0].split())


def _blob_ids(rig: ImapRig) -> list[BlobId]:
    async def query() -> list[BlobId]:
        async with rig.engine.connect() as conn:
            rows = await conn.execute(select(t.cm_messages.c.blob_id).order_by(t.cm_messages.c.uid))
            return [BlobId(bytes(r[0])) for r in rows]

    return rig.run(query())


def _wait_indexed(rig: ImapRig, count: int) -> None:
    indexes = _FULLTEXT[rig.engine]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        index = next((u.index for u in indexes._users.values()), None)
        if index is not None and len(index.indexed) >= count:
            return
        time.sleep(0.1)
    raise AssertionError("the background pass did not index the mailbox")


def test_indexed_single_words_need_no_message_read(rig: ImapRig) -> None:
    for i in range(20):
        rig.deliver(_message(i))
    client = _login(rig)
    quokkas = [i + 1 for i in range(20) if i % 4 == 1]
    assert _search(client, "BODY", "quokka") == quokkas  # slow path, and queued
    _wait_indexed(rig, 20)
    for blob_id in _blob_ids(rig):  # from now on a read would fail
        rig.blobs.path_of(blob_id).unlink()
    assert _search(client, "BODY", "quokka") == quokkas
    assert _search(client, "TEXT", "okk") == quokkas
    assert _search(client, "BODY", "number1") == [2, *range(11, 21)]
    assert _search(client, "SUBJECT", "s7") == [8]
    assert _search(client, "NOT", "BODY", "wombat") == quokkas
    # Two words: the index narrows to the candidates, which must then be read.
    status, _data = client.uid("SEARCH", "BODY", '"a quokka"')
    assert status == "NO"
    client.logout()


def test_new_mail_is_found_before_it_is_indexed_and_the_pass_ends_with_the_session(
    rig: ImapRig,
) -> None:
    for i in range(8):
        rig.deliver(_message(i))
    client = _login(rig)
    _wait_indexed(rig, 8)
    rig.deliver(_message(9))  # not indexed: read the slow way
    client.noop()
    assert _search(client, "BODY", "quokka") == [2, 6, 9]
    user = next(iter(_FULLTEXT[rig.engine]._users.values()))
    client.logout()
    deadline = time.monotonic() + 10
    while not (user.task and user.task.done()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert user.task is not None and user.task.done()
    assert not _FULLTEXT[rig.engine]._users


def test_only_the_last_searchers_keep_their_words(tmp_path: Path) -> None:
    rig_iter = start_rig(
        tmp_path, **{"imap.fts_background_percent": 100, "imap.fts_loaded_users": 1}
    )
    rig = next(rig_iter)
    try:
        rig.add_user("bob@example.org", PASSWORD)
        for i in range(6):
            rig.deliver(_message(i))
            rig.deliver(_message(i), "bob@example.org")
        alice = _login(rig)
        bob = imaplib.IMAP4("127.0.0.1", rig.port)
        bob.login("bob@example.org", PASSWORD)
        bob.select("INBOX")
        deadline = time.monotonic() + 60
        users = _FULLTEXT[rig.engine]._users
        while time.monotonic() < deadline and not all(
            len(u.index.indexed) == 6 for u in users.values()
        ):
            time.sleep(0.1)
        assert _search(alice, "BODY", "quokka") == [2, 6]
        assert _search(bob, "BODY", "quokka") == [2, 6]
        loaded = {u.index.account.user.email: u.index.loaded for u in users.values()}
        assert loaded == {USER: False, "bob@example.org": True}
        assert _search(alice, "BODY", "quokka") == [2, 6]  # read again, correct
        alice.logout()
        bob.logout()
    finally:
        for _ in rig_iter:
            pass


def test_a_short_session_does_not_start_the_pass_and_search_wakes_it(
    rig: ImapRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass lists every blob and reads the index before its first batch: not for a
    session that logs in, selects and reads (it would compete with them), but at once
    when SEARCH needs the index."""
    monkeypatch.setattr(_fulltext, "START_DELAY_S", 600.0)
    for i in range(8):
        rig.deliver(_message(i))
    client = _login(rig)
    client.noop()
    user = next(iter(_FULLTEXT[rig.engine]._users.values()))
    assert user.task is not None and not user.task.done()
    assert user.blobs == {} and not user.index.indexed  # the pass has not begun
    assert _search(client, "BODY", "quokka") == [2, 6]  # the slow way; wakes the pass
    _wait_indexed(rig, 8)
    client.logout()
