"""A session's first SORT/THREAD takes the keys of messages nobody has read from the
sort entries delivery left (in-process server, imaplib, no background pass): answers
exactly as the slow path's, with the messages themselves unreadable; two sessions of
one user and another user from one address; the entries folded into sort chunks and
deleted; one that does not open, and messages without one, done the slow way; the
background pass deletes the entries of the keys it records."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from cryptmail.db import tables as t
from cryptmail.store import DeliveryEpochs, SortFields, deliver_message, header_sort_fields
from cryptmail.store._sortentries import RECORD_ENTRY, _entry_context, encode_entry
from cryptmail.users import get_user

from ..server_rig import PASSWORD, USER, ImapRig, start_rig, wait_until
from .test_sortrecords import (
    BOB,
    _answers,
    _forget_tables,
    _login,
    _message,
    _no_reads,
    _recorded_users,
)

_EPOCHS = DeliveryEpochs()  # as one delivery process's


def _deliver(rig: ImapRig, message: bytes, email: str = USER) -> None:
    """As LMTP delivers: with the header's sort fields, made once."""
    head = message[: message.index(b"\r\n\r\n") + 4]

    async def work() -> None:
        async with rig.engine.connect() as conn:
            user = await get_user(conn, email)

        async def source() -> AsyncIterator[bytes]:
            yield message

        fields = SortFields(_EPOCHS, header_sort_fields(head))
        await deliver_message(
            rig.engine, rig.blobs, user, source(), bus=rig.bus, sort_fields=fields
        )

    rig.run(work())


def _entries(rig: ImapRig) -> int:
    async def work() -> int:
        async with rig.engine.connect() as conn:
            query = select(func.count()).select_from(t.cm_sort_entries)
            return int((await conn.execute(query)).scalar_one())

    return rig.run(work())


def test_the_first_sort_takes_the_delivery_entries_alone(
    rigs: tuple[ImapRig, ImapRig],
) -> None:
    slow, rig = rigs
    count = 300
    for server in (slow, rig):
        server.add_user(BOB, PASSWORD)
    for i in range(count):
        slow.deliver(_message(i, count))
        _deliver(rig, _message(i, count))
        if i % 3:
            slow.deliver(_message(count - 1 - i, count), BOB)
            _deliver(rig, _message(count - 1 - i, count), BOB)
    expected = _answers(_login(slow))
    expected_bob = _answers(_login(slow, BOB))
    assert _entries(rig) == count + count * 2 // 3
    _no_reads(rig, USER)  # the messages cannot be opened: only the entries give keys
    _no_reads(rig, BOB)
    alice = [_login(rig), _login(rig)]  # two sessions, one address
    bob = _login(rig, BOB)
    assert _answers(alice[0]) == expected
    assert _answers(bob) == expected_bob
    assert _answers(alice[1]) == expected
    for client in [*alice, bob]:
        client.logout()  # OK once the chunks each first SORT writes after its answer are in
    assert _entries(rig) == 0  # folded into the sort chunks, in their transaction
    _forget_tables()  # a new process: the chunks hold every key now
    assert _answers(_login(rig)) == expected
    assert _answers(_login(rig, BOB)) == expected_bob


def test_entries_that_do_not_open_and_messages_without_one_go_the_slow_way(
    rigs: tuple[ImapRig, ImapRig], caplog: pytest.LogCaptureFixture
) -> None:
    slow, rig = rigs
    count = 120
    for i in range(count):
        slow.deliver(_message(i, count))
        if i % 4:
            _deliver(rig, _message(i, count))
        else:
            rig.deliver(_message(i, count))  # no entry (as a quota warning, an import)
    e = t.cm_sort_entries

    async def swap() -> None:  # a database writer moves one entry to another message
        async with rig.engine.begin() as conn:
            rows = (await conn.execute(select(e.c.message_id, e.c.sealed).limit(2))).all()
            await conn.execute(
                update(e).where(e.c.message_id == rows[0][0]).values(sealed=rows[1][1])
            )

    rig.run(swap())
    expected = _answers(_login(slow))
    client = _login(rig)
    with caplog.at_level(logging.WARNING):
        assert _answers(client) == expected
    assert "did not open" in caplog.text
    client.logout()
    assert _entries(rig) == 0
    _forget_tables()
    assert _answers(_login(rig)) == expected


def test_the_background_pass_folds_the_entries_of_what_it_records(tmp_path: Path) -> None:
    """No SORT at all: the pass, recording the keys of the messages it reads, deletes
    their entries with the chunk writes; a new process then sorts from the chunks."""
    slow_iter = start_rig(tmp_path / "slow", **{"imap.fts_index": False})
    fast_iter = start_rig(tmp_path / "fast", **{"imap.fts_background_percent": 100})
    slow, rig = next(slow_iter), next(fast_iter)
    try:
        count = 150
        for i in range(count):
            slow.deliver(_message(i, count))
            _deliver(rig, _message(i, count))
        assert _entries(rig) == count
        client = _login(rig)
        wait_until(lambda: _recorded_users(rig) and _entries(rig) == 0, "entries not folded")
        client.logout()
        _forget_tables()
        _no_reads(rig, USER)
        assert _answers(_login(rig)) == _answers(_login(slow))
    finally:
        for rest in (fast_iter, slow_iter):
            for _ in rest:
                pass


def _odd(i: int) -> bytes:
    """Headers the keys are easy to get wrong on: encoded words (B and Q, Latin-1),
    no Date, group syntax, an empty header, raw UTF-8 subjects, In-Reply-To alone.
    Dated ones are years before the arrivals, so a message without a Date (sorted by
    its arrival) comes after them on both servers alike."""
    date = f"Date: {1 + i % 27:02d} Mar 2020 {i % 24:02d}:{(i * 7) % 60:02d}:00 +0100\r\n"
    heads = [
        f"From: =?utf-8?b?w4lsb2TDqWE=?= <e{i}@example.net>\r\nTo: alice@example.org\r\n"
        f"Subject: =?iso-8859-1?q?Caf=E9_{i % 3}?= (fwd)\r\n{date}",
        f"From: Team: a{i % 5}@example.net, b@example.net;\r\nTo: undisclosed-recipients:;\r\n"
        f"Subject: [fwd: Re: Ünïcödé straße {i % 4}]\r\nMessage-ID: <o{i}@example.net>\r\n",
        f'From: <>\r\nCc: "Q, R" <q@example.org>\r\nSubject: \r\n{date}'
        f"In-Reply-To: <o{i - 1}@example.net> <x@example.net>\r\n",
        "",  # an empty header: the body starts at once
        f"From: plain{i}@example.net\r\nSubject: RE: Re[2]: [list] \u00e9t\u00e9 {i % 2}\r\n"
        f"{date}References: <o{i - 3}@example.net>\r\n   <o{i - 2}@example.net>\r\n",
    ]
    return (heads[i % len(heads)] + "\r\n" + "Body.\r\n" * (1 + i % 5)).encode()


def _deliver_old(rig: ImapRig, message: bytes, email: str, old: bool) -> None:
    """As _deliver; with ``old``, the entry then sealed again as the code before this
    wrote it (version 1: the raw record, whose keys the reader makes)."""
    end = message.find(b"\r\n\r\n")
    record = header_sort_fields(message[: end + 4] if end >= 0 else b"")

    async def work() -> None:
        async with rig.engine.connect() as conn:
            user = await get_user(conn, email)

        async def source() -> AsyncIterator[bytes]:
            yield message

        done = await deliver_message(
            rig.engine, rig.blobs, user, source(), bus=rig.bus,
            sort_fields=SortFields(_EPOCHS, record),
        )  # fmt: skip
        if not old:
            return
        assert done.blob is not None
        epoch = _EPOCHS._held[user.id]
        sealed = epoch.cipher.seal(
            encode_entry(done.blob.size, record, RECORD_ENTRY),
            _entry_context(user.id, epoch.id, done.row_id, done.blob.blob_id),
        )
        e = t.cm_sort_entries
        async with rig.engine.begin() as conn:
            await conn.execute(update(e).where(e.c.message_id == done.row_id).values(sealed=sealed))

    rig.run(work())


def _same_arrivals(rig: ImapRig) -> None:
    """Internal dates a minute apart by UID on both servers: a message without a Date
    sorts by its arrival, and two servers' arrivals fall into seconds differently."""
    m = t.cm_messages

    async def work() -> None:
        async with rig.engine.begin() as conn:
            for row_id, uid in (await conn.execute(select(m.c.id, m.c.uid))).all():
                when = datetime(2026, 1, 1) + timedelta(minutes=int(uid))
                await conn.execute(update(m).where(m.c.id == row_id).values(internal_date=when))

    rig.run(work())


def test_odd_headers_and_old_entries_sort_as_the_slow_path(
    rigs: tuple[ImapRig, ImapRig],
) -> None:
    """Ready entries and version 1 entries (records) mixed, over odd headers: every
    criterion and both THREADs as the slow path answers, for two sessions of one user
    and a second user from one address, with the messages themselves unreadable."""
    slow, rig = rigs
    count = 150  # each user past _RECORD_MIN, so the first SORT writes chunks
    for server in (slow, rig):
        server.add_user(BOB, PASSWORD)
    for i in range(count):
        slow.deliver(_odd(i))
        _deliver_old(rig, _odd(i), USER, old=i % 3 == 0)
        if i % 2:
            slow.deliver(_odd(count - i), BOB)
            _deliver_old(rig, _odd(count - i), BOB, old=i % 4 == 1)
    for server in (slow, rig):
        _same_arrivals(server)
    expected = _answers(_login(slow))
    expected_bob = _answers(_login(slow, BOB))
    assert _entries(rig) == count + count // 2
    _no_reads(rig, USER)
    _no_reads(rig, BOB)
    alice = [_login(rig), _login(rig)]
    bob = _login(rig, BOB)
    assert _answers(alice[0]) == expected
    assert _answers(bob) == expected_bob
    assert _answers(alice[1]) == expected
    for client in [*alice, bob]:
        client.logout()
    assert _entries(rig) == 0
    _forget_tables()
    assert _answers(_login(rig)) == expected


def _arrival_runs(rig: ImapRig) -> None:
    """Internal dates in runs of three equal ones, later UIDs earlier: ARRIVAL differs
    from UID order, and ties show whether mailbox order is kept (REVERSE too)."""
    m = t.cm_messages

    async def work() -> None:
        async with rig.engine.begin() as conn:
            for row_id, uid in (await conn.execute(select(m.c.id, m.c.uid))).all():
                when = datetime(2026, 1, 1) - timedelta(minutes=int(uid) // 3)
                await conn.execute(update(m).where(m.c.id == row_id).values(internal_date=when))

    rig.run(work())


def test_a_sort_by_arrival_alone_takes_no_key_and_answers_as_with_keys(
    rigs: tuple[ImapRig, ImapRig],
) -> None:
    """SORT (ARRIVAL) needs only the internal date, which the listing holds: the first
    one takes no delivery entry (they are all still there afterwards) and answers as the
    slow path does, REVERSE, a part of the mailbox, ESORT and two sessions of one user
    included; once another criterion loaded the keys, the table's order agrees."""
    slow, rig = rigs
    count = 90
    for i in range(count):
        slow.deliver(_message(i, count))
        _deliver(rig, _message(i, count))
    for server in (slow, rig):
        _arrival_runs(server)
    asked = [
        ("UID", "SORT", "(ARRIVAL)", "UTF-8", "ALL"),
        ("UID", "SORT", "(REVERSE ARRIVAL)", "UTF-8", "ALL"),
        ("SORT", "(REVERSE ARRIVAL)", "UTF-8", "UID", "20:70"),
        ("SORT", "(ARRIVAL REVERSE ARRIVAL)", "UTF-8", "ALL"),
        ("SORT", "RETURN (MIN MAX COUNT)", "(REVERSE ARRIVAL)", "UTF-8", "ALL"),
    ]

    def answers(client: object) -> list[list[bytes]]:
        out = []
        for command in asked:
            status, data = client._simple_command(*command)  # type: ignore[attr-defined]
            assert status == "OK", data
            name = "ESEARCH" if "RETURN" in command else command[1 if command[0] == "UID" else 0]
            out.append(client._untagged_response(status, data, name)[1])  # type: ignore[attr-defined]
        return out

    expected = answers(_login(slow))
    _no_reads(rig, USER)
    first, second = _login(rig), _login(rig)
    assert answers(first) == expected
    assert answers(second) == expected
    assert _entries(rig) == count  # no key was taken for them
    status, _data = first.uid("SORT", "(DATE)", "UTF-8", "ALL")  # now the keys are loaded
    assert status == "OK"
    assert answers(second) == expected
