"""A session's first SORT/THREAD takes the keys of messages nobody has read from the
sort entries delivery left (in-process server, imaplib, no background pass): answers
exactly as the slow path's, with the messages themselves unreadable; two sessions of
one user and another user from one address; the entries folded into sort chunks and
deleted; one that does not open, and messages without one, done the slow way; the
background pass deletes the entries of the keys it records."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from cryptmail.db import tables as t
from cryptmail.store import DeliveryEpochs, SortFields, deliver_message, header_sort_fields
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


@pytest.fixture
def rigs(tmp_path: Path) -> Iterator[tuple[ImapRig, ImapRig]]:
    """The server under test and a reference, both without the background pass."""
    slow_iter = start_rig(tmp_path / "slow", **{"imap.fts_index": False})
    fast_iter = start_rig(tmp_path / "fast", **{"imap.fts_index": False})
    slow, fast = next(slow_iter), next(fast_iter)
    try:
        yield slow, fast
    finally:
        for rest in (fast_iter, slow_iter):
            for _ in rest:
                pass


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
    assert _entries(rig) == 0  # folded into the sort chunks, in their transaction
    for client in [*alice, bob]:
        client.logout()
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
    assert _entries(rig) == 0
    client.logout()
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
