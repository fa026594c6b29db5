"""Sort key records inside a live server (in-process, imaplib): the background pass
records every message's keys, sealed, per mailbox; a new process's first SORT and
THREAD read them instead of the message caches and answer exactly as the slow path
does, with several sessions, two users from one address, and while the pass runs; a
changed or moved chunk is not used; nothing of a subject is readable at rest."""

from __future__ import annotations

import contextlib
import imaplib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from cryptmail.db import tables as t
from cryptmail.imap.message._sortrecord import decode_sort_record
from cryptmail.imap.server import _sortkeys
from cryptmail.imap.server._fulltext import FullTextIndexes
from cryptmail.imap.server._listener import _FULLTEXT
from cryptmail.store import BlobId, inbox_id, load_sort_chunks, open_sort_chunk

from ..server_rig import PASSWORD, USER, ImapRig, rig_pair, start_rig, wait_until

BOB = "bob@example.org"
_WORD = "Quixotrombone"  # in every subject and display name; never at rest

_SORTS = (
    "(ARRIVAL)", "(DATE)", "(REVERSE DATE)", "(SUBJECT)", "(FROM)", "(REVERSE FROM)", "(TO)",
    "(CC)", "(SIZE)", "(DISPLAYFROM)", "(DISPLAYTO)", "(REVERSE SUBJECT DATE)",
)  # fmt: skip


def _message(i: int, count: int) -> bytes:
    """Dates, senders, subjects and sizes in orders unlike arrival; replies threaded;
    some with no Message-ID or an encoded display name. (Every one has a Date: one
    without sorts by its arrival, and two servers' arrivals tie differently within a
    second; the record's codec test covers a missing date.)"""
    minute = (i * 7919) % count
    day, rest = divmod(minute, 24 * 60)
    date = f"Date: {day + 1:02d} Nov 2026 {rest // 60:02d}:{rest % 60:02d}:00 +0000\r\n"
    reply = f"References: <m{i // 5 * 5}@example.net>\r\n" if i % 5 else ""
    name = f"=?utf-8?q?{_WORD}_=C3=A9{i % 7}?=" if i % 3 else f"{_WORD} {i % 13}"
    msgid = f"Message-ID: <m{i}@example.net>\r\n" if i % 17 != 4 else ""
    cc = f"Cc: c{(i * 7) % 23}@example.org\r\n" if i % 2 else ""
    subject = ("Re: " if i % 5 else "") + f"[list] {_WORD} topic {(i * 13) % 41:03d}"
    return (
        f"From: {name} <s{(i * 31) % 29:02d}@example.net>\r\nTo: t{i % 4}@example.org\r\n"
        f"{cc}{date}Subject: {subject}\r\n{msgid}{reply}\r\n" + "Body.\r\n" * (1 + i % 9)
    ).encode()


_opened: list[imaplib.IMAP4] = []


@pytest.fixture(autouse=True)
def _close_sessions() -> Iterator[None]:
    """Close every session a test opened (many are only asked once, never logged out):
    each left its socket to the collector (ResourceWarning)."""
    yield
    while _opened:
        with contextlib.suppress(OSError):  # one logged out is closed already
            _opened.pop().shutdown()


def _login(rig: ImapRig, email: str = USER) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", rig.port)
    _opened.append(client)
    client.login(email, PASSWORD)
    client.select("INBOX")
    return client


def _answers(client: imaplib.IMAP4) -> dict[str, bytes]:
    answers = {}
    for criteria in _SORTS:
        status, data = client.uid("SORT", criteria, "UTF-8", "ALL")
        assert status == "OK", data
        answers[criteria] = data[0]
    status, data = client.sort("(SUBJECT)", "UTF-8", "UID", "20:700")  # part of the mailbox
    assert status == "OK", data
    answers["part"] = data[0]
    for algorithm in ("REFERENCES", "ORDEREDSUBJECT"):
        status, data = client.uid("THREAD", algorithm, "UTF-8", "ALL")
        assert status == "OK", data
        answers[algorithm] = data[0]
    return answers


def _count(rig: ImapRig, query: Callable[[], object]) -> int:
    async def work() -> int:
        async with rig.engine.connect() as conn:
            return int((await conn.execute(query())).scalar_one())  # type: ignore[call-overload]

    return rig.run(work())


def _chunks(rig: ImapRig) -> int:
    return _count(rig, lambda: select(func.count()).select_from(t.cm_sort_chunks))


def _recorded_users(rig: ImapRig) -> bool:
    """Every user's pass is idle with every mailbox's record complete."""
    users = _FULLTEXT[rig.engine]._users
    return bool(users) and all(
        not user.todo
        and not user.uncached
        and len(user.recorded)
        == _count(
            rig,
            lambda user=user: select(func.count()).where(  # type: ignore[misc]
                t.cm_mailboxes.c.user_id == user.index.account.user.id
            ),
        )
        for user in users.values()
    )


def _forget_tables() -> None:
    """As a new process: no sort keys in memory (the next SORT reads the record)."""
    _sortkeys._shared.clear()


def _no_reads(rig: ImapRig, email: str) -> None:
    """Take away every way to make keys but the record: blobs gone, caches garbage."""

    async def work() -> list[BlobId]:
        m, b, u = t.cm_messages, t.cm_mailboxes, t.virtual_users
        async with rig.engine.begin() as conn:
            user_id = (await conn.execute(select(u.c.id).where(u.c.email == email))).scalar_one()
            boxes = select(b.c.id).where(b.c.user_id == user_id).scalar_subquery()
            rows = await conn.execute(select(m.c.blob_id).where(m.c.mailbox_id.in_(boxes)))
            blob_ids = [BlobId(bytes(r[0])) for r in rows]
            await conn.execute(
                update(m).where(m.c.mailbox_id.in_(boxes)).values(cache_sealed=b"garbage")
            )
        return blob_ids

    for blob_id in rig.run(work()):
        rig.blobs.path_of(blob_id).unlink()


@pytest.fixture
def rigs(tmp_path: Path) -> Iterator[tuple[ImapRig, ImapRig]]:
    """A server with the pass (records written) and a reference with none (slow path)."""
    yield from rig_pair(tmp_path, **{"imap.fts_background_percent": 100})


def test_a_new_process_sorts_from_the_record_alone_for_two_users_from_one_address(
    rigs: tuple[ImapRig, ImapRig],
) -> None:
    slow, rig = rigs
    count = 2600  # two chunks of 2,048 UIDs
    rig.add_user(BOB, PASSWORD)
    for i in range(count):
        slow.deliver(_message(i, count))
        rig.deliver(_message(i, count))
        if i % 2:
            rig.deliver(_message(i, count), BOB)
    expected = _answers(_login(slow))
    # Two sessions of alice and one of bob, all from 127.0.0.1: the passes record.
    sessions = [_login(rig), _login(rig), _login(rig, BOB)]
    wait_until(lambda: _recorded_users(rig), "the passes did not record every mailbox", 300)
    assert _chunks(rig) == 3  # alice's INBOX has two chunks, bob's one
    for client in sessions:
        client.logout()
    _forget_tables()
    _no_reads(rig, USER)
    alice = [_login(rig), _login(rig)]
    assert _answers(alice[0]) == expected  # from the record: nothing else is readable
    assert _answers(alice[1]) == expected
    bob = _login(rig, BOB)
    status, data = bob.uid("SORT", "(DATE)", "UTF-8", "ALL")
    assert status == "OK", data
    assert len(data[0].split()) == count // 2
    for client in [*alice, bob]:
        client.logout()


def _first(client: imaplib.IMAP4, asked: str) -> bytes:
    if asked in ("REFERENCES", "ORDEREDSUBJECT"):
        status, data = client.uid("THREAD", asked, "UTF-8", "ALL")
    else:
        status, data = client.uid("SORT", asked, "UTF-8", "ALL")
    assert status == "OK", data
    return bytes(data[0])


def test_each_criterion_first_from_the_record_as_the_slow_path(
    rigs: tuple[ImapRig, ImapRig],
) -> None:
    """The record's chunks are decoded only as far as the first command asks (one
    column for a SORT by one criterion): every criterion and THREAD, asked first on a
    new process's table, answers as the slow path, for two users from one address and
    a second session of each asking the next criterion while the first's blocks are
    still undecoded."""
    slow, rig = rigs
    count = 300  # above _RECORD_MIN: a new process reads the record
    rig.add_user(BOB, PASSWORD)
    slow.add_user(BOB, PASSWORD)
    for i in range(count):
        for server in (slow, rig):
            server.deliver(_message(i, count))
            if i % 3:
                server.deliver(_message(i, count), BOB)
    asked = [*_SORTS, "REFERENCES", "ORDEREDSUBJECT"]
    expected = {
        email: {criteria: _first(_login(slow, email), criteria) for criteria in asked}
        for email in (USER, BOB)
    }
    sessions = [_login(rig), _login(rig, BOB)]
    wait_until(lambda: _recorded_users(rig), "the passes did not record every mailbox", 300)
    for client in sessions:
        client.logout()
    _no_reads(rig, USER)
    _no_reads(rig, BOB)
    for n, criteria in enumerate(asked):
        _forget_tables()  # as a new process: the first command reads the record
        following = asked[(n + 1) % len(asked)]
        for email in (USER, BOB):
            first, second = _login(rig, email), _login(rig, email)
            assert _first(first, criteria) == expected[email][criteria], (email, criteria)
            assert _first(second, following) == expected[email][following], (email, following)
            assert _first(first, criteria) == expected[email][criteria], (email, criteria)
            first.logout()
            second.logout()


def test_a_sort_while_the_pass_records_answers_as_the_slow_path_and_fills_the_record(
    tmp_path: Path,
) -> None:
    count = 700
    slow_iter = start_rig(tmp_path / "slow", **{"imap.fts_index": False})
    fast_iter = start_rig(tmp_path / "fast", **{"imap.fts_background_percent": 1})
    slow, rig = next(slow_iter), next(fast_iter)
    try:
        for i in range(count):
            slow.deliver(_message(i, count))
            rig.deliver(_message(i, count))
        client = _login(rig)
        wait_until(
            lambda: (
                _count(
                    rig, lambda: select(func.count()).where(t.cm_messages.c.cache_sealed.is_(None))
                )
                < count
            ),
            "the pass sealed no cache",
        )
        during = _answers(client)  # part cached by the pass, the rest the slow way
        assert during == _answers(_login(slow))
        # The session that made keys the slow way wrote them: a new process reads them.
        assert _chunks(rig) == 1
        client.logout()
        _forget_tables()
        _no_reads(rig, USER)
        assert _answers(_login(rig)) == during
    finally:
        for rest in (fast_iter, slow_iter):
            for _ in rest:
                pass


def test_expunged_and_new_messages(rigs: tuple[ImapRig, ImapRig]) -> None:
    slow, rig = rigs
    count = 100  # above _RECORD_MIN: a new process reads the record
    for i in range(count):
        slow.deliver(_message(i, count))
        rig.deliver(_message(i, count))
    client = _login(rig)
    wait_until(lambda: _recorded_users(rig), "the pass did not record the mailbox")
    reference = _login(slow)
    for server_client in (client, reference):  # the same messages gone on both
        server_client.uid("STORE", "5:9,33", "+FLAGS", "(\\Deleted)")
        server_client.expunge()
    for i in range(count, count + 5):  # new mail, not recorded yet
        slow.deliver(_message(i, count))
        rig.deliver(_message(i, count))
    client.noop()
    reference.noop()
    expected = _answers(reference)
    assert _answers(client) == expected
    client.logout()
    _forget_tables()
    assert _answers(_login(rig)) == expected  # record (old and new) plus slow path


def _user_inbox(email: str) -> object:
    u, b = t.virtual_users, t.cm_mailboxes
    user_id = select(u.c.id).where(u.c.email == email).scalar_subquery()
    return select(b.c.id).where(b.c.user_id == user_id, b.c.role == "inbox").scalar_subquery()


def test_a_chunk_swapped_to_another_user_is_not_used_and_is_written_again(
    rigs: tuple[ImapRig, ImapRig], caplog: pytest.LogCaptureFixture
) -> None:
    slow, rig = rigs
    count = 80  # above _RECORD_MIN: a new process reads the record
    rig.add_user(BOB, PASSWORD)
    for i in range(count):
        slow.deliver(_message(i, count))
        rig.deliver(_message(i, count))
        rig.deliver(_message(count - 1 - i, count), BOB)
    sessions = [_login(rig), _login(rig, BOB)]
    wait_until(lambda: _recorded_users(rig) and _chunks(rig) == 2, "the passes did not record")
    for client in sessions:
        client.logout()
    chunks = t.cm_sort_chunks

    async def swap() -> bytes:
        # A database writer gives bob alice's chunk (same chunk number and UIDVALIDITY).
        async with rig.engine.begin() as conn:
            alice_chunk = (
                await conn.execute(
                    select(chunks.c.sealed).where(chunks.c.mailbox_id == _user_inbox(USER))
                )
            ).scalar_one()
            await conn.execute(
                update(chunks)
                .where(chunks.c.mailbox_id == _user_inbox(BOB))
                .values(sealed=alice_chunk)
            )
            return bytes(alice_chunk)

    swapped = rig.run(swap())
    _forget_tables()
    bob = _login(rig, BOB)
    with caplog.at_level(logging.WARNING):
        status, data = bob.uid("SORT", "(ARRIVAL)", "UTF-8", "ALL")
    assert status == "OK", data
    assert [int(n) for n in data[0].split()] == list(range(1, count + 1))
    status, data = bob.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")
    slow_client = _login(slow)
    # Bob's mail is alice's in reverse order: the same subjects, UIDs mirrored.
    status_ref, ref = slow_client.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")
    assert status == status_ref == "OK"
    assert len(data[0].split()) == count
    assert {int(n) for n in data[0].split()} == {int(n) for n in ref[0].split()}
    assert any("sort chunk 0 of mailbox" in r.getMessage() for r in caplog.records)

    async def bobs_chunk() -> bytes:
        async with rig.engine.connect() as conn:
            found = await conn.execute(
                select(chunks.c.sealed).where(chunks.c.mailbox_id == _user_inbox(BOB))
            )
            return bytes(found.scalar_one())

    bob.logout()  # its OK once the chunk written after the answer is in
    assert rig.run(bobs_chunk()) != swapped  # the slow path wrote bob's keys again
    slow_client.logout()


def test_nothing_of_a_subject_or_name_is_at_rest(tmp_path: Path) -> None:
    count = 50
    rig_iter = start_rig(tmp_path, **{"imap.fts_background_percent": 100})
    rig = next(rig_iter)
    try:
        for i in range(count):
            rig.deliver(_message(i, count))
        client = _login(rig)
        wait_until(lambda: _recorded_users(rig) and _chunks(rig) == 1, "the pass did not record")
        client.logout()
    finally:
        for _ in rig_iter:
            pass
    needles = [_WORD.encode(), _WORD.lower().encode(), _WORD.upper().encode(), b"@example.net"]
    needles += [b"S%02d@EXAMPLE.NET" % n for n in range(29)] + [b"TOPIC 0"]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            contents = path.read_bytes()
            assert not any(needle in contents for needle in needles), path


def test_the_pass_records_keys_as_it_seals_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the same read: with the catch-up step off, every message the pass cached has
    its keys recorded by the time the caches are all sealed."""

    async def no_catch_up(self: object, user: object) -> bool:
        return False

    monkeypatch.setattr(FullTextIndexes, "_record_step", no_catch_up)
    count = 300
    rig_iter = start_rig(tmp_path, **{"imap.fts_background_percent": 100})
    rig = next(rig_iter)
    try:
        for i in range(count):
            rig.deliver(_message(i, count))
        client = _login(rig)
        uncached = select(func.count()).where(t.cm_messages.c.cache_sealed.is_(None))
        wait_until(lambda: _count(rig, lambda: uncached) == 0, "the pass sealed not every cache")
        account = next(iter(_FULLTEXT[rig.engine]._users.values())).index.account

        async def recorded() -> list[int]:
            async with rig.engine.connect() as conn:
                box = await inbox_id(conn, account.user.id)
                validity = (
                    await conn.execute(
                        select(t.cm_mailboxes.c.uidvalidity).where(t.cm_mailboxes.c.id == box)
                    )
                ).scalar_one()
            uids = []
            for chunk, sealed in (await load_sort_chunks(rig.engine, box, validity)).items():
                payload = open_sort_chunk(account, box, validity, chunk, sealed)
                uids += [uid for uid, _row, _keys in decode_sort_record(payload)]
            return sorted(uids)

        # The record of the last batch is written just after its caches: waited for
        # (with the catch-up off, only the caching path can write it).
        wait_until(
            lambda: rig.run(recorded()) == list(range(1, count + 1)),
            "the pass did not record the keys of every message it cached",
        )
        client.logout()
    finally:
        for _ in rig_iter:
            pass
