"""Writes a session defers past its answer (`_writes.SessionWrites`), alone and as a
first SORT's chunk write: started only once the answer is sent, awaited by LOGOUT's
OK, by a closing connection and by the listener's stop; a write that fails (or dies
inside its transaction) logs, leaves the delivery entries, and the next process folds
them, with answers as the slow path's throughout."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from cryptmail.imap.server import _sortkeys
from cryptmail.imap.server._sortrecords import write_recorded
from cryptmail.imap.server._writes import SessionWrites
from cryptmail.store import _sortchunks

from ..server_rig import USER, ImapRig, start_rig
from .test_sortkeys import _deliver, _entries
from .test_sortrecords import _answers, _chunks, _forget_tables, _login, _message, _no_reads

# -- SessionWrites alone ------------------------------------------------------------------


async def test_a_deferred_write_starts_only_when_started_and_finish_awaits_it() -> None:
    writes = SessionWrites()
    done: list[str] = []

    async def write() -> None:
        await asyncio.sleep(0)
        done.append("written")

    writes.defer(write, "test")
    await asyncio.sleep(0.01)
    assert done == [] and len(writes) == 1  # not before the answer is sent
    writes.start()
    writes.defer(write, "test")  # deferred by the next command, not started yet
    await writes.finish()  # starts it, and waits for both
    assert done == ["written", "written"] and len(writes) == 0


async def test_a_write_that_fails_is_logged_and_finish_does_not_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writes = SessionWrites()

    async def broken() -> None:
        raise RuntimeError("disk on fire")

    writes.defer(broken, "mailbox 7")
    writes.start()
    with caplog.at_level(logging.ERROR):
        await writes.finish()
    assert "deferred write (mailbox 7) failed" in caplog.text


async def test_a_cancelled_finish_waits_for_the_write_then_raises() -> None:
    writes = SessionWrites()
    gate = asyncio.Event()
    done: list[str] = []

    async def write() -> None:
        await gate.wait()
        done.append("written")

    writes.defer(write, "test")
    waiter = asyncio.create_task(writes.finish())
    await asyncio.sleep(0.01)
    waiter.cancel()  # a listener's stop
    await asyncio.sleep(0.01)
    assert not waiter.done()  # still waiting for the write, not cut short
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert done == ["written"]


# -- a first SORT's chunk write -----------------------------------------------------------


_COUNT = 150  # above _RECORD_MIN: the first SORT writes chunks


def _fill(slow: ImapRig, rig: ImapRig) -> dict[str, bytes]:
    """The same mail on both (entries on ``rig`` only); the slow path's answers."""
    for i in range(_COUNT):
        slow.deliver(_message(i, _COUNT))
        _deliver(rig, _message(i, _COUNT))
    _no_reads(rig, USER)  # the messages cannot be opened: only entries and chunks give keys
    reference = _login(slow)
    answers = _answers(reference)
    reference.logout()
    return answers


class _Gate:
    """Holds every chunk write of the SORT path until opened; records the order of
    what the test and the writes did."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open = threading.Event()
        self.events: list[str] = []
        original = write_recorded

        async def held(*args: Any, **kwargs: Any) -> None:
            self.events.append("write started")
            await asyncio.to_thread(self.open.wait, 60)
            await original(*args, **kwargs)
            self.events.append("written")

        monkeypatch.setattr(_sortkeys, "write_recorded", held)


def test_the_first_sort_answers_before_its_write_and_logout_waits_for_it(
    rigs: tuple[ImapRig, ImapRig], monkeypatch: pytest.MonkeyPatch
) -> None:
    slow, rig = rigs
    expected = _fill(slow, rig)
    gate = _Gate(monkeypatch)
    client = _login(rig)
    assert _answers(client) == expected  # answered with the write still held
    assert gate.events == ["write started"]
    assert _entries(rig) == _COUNT and _chunks(rig) == 0
    # Another process's session meanwhile: from the entries still there, the same answers.
    _forget_tables()
    other = _login(rig)
    assert _answers(other) == expected
    outcome: list[str] = []
    logout = threading.Thread(target=lambda: outcome.append(client.logout()[0]))
    logout.start()
    logout.join(0.5)
    assert logout.is_alive()  # LOGOUT has no OK while the write is held
    gate.open.set()
    logout.join(60)
    assert outcome == ["BYE"]  # imaplib's logout: BYE then the tagged OK
    assert gate.events[:2] == ["write started", "write started"]
    other.logout()
    assert gate.events.count("written") == 2
    assert _entries(rig) == 0 and _chunks(rig) == 1
    _forget_tables()  # a new process: the chunks alone give the keys
    third = _login(rig)
    assert _answers(third) == expected
    third.logout()
    assert gate.events.count("write started") == 2  # nothing left to write


def test_a_connection_closed_without_logout_and_the_stop_wait_for_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_iter = start_rig(tmp_path / "slow", **{"imap.fts_index": False})
    fast_iter = start_rig(tmp_path / "fast", **{"imap.fts_index": False})
    slow, rig = next(slow_iter), next(fast_iter)
    try:
        expected = _fill(slow, rig)
        gate = _Gate(monkeypatch)
        client = _login(rig)
        status, data = client.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")
        assert status == "OK" and data[0] == expected["(SUBJECT)"]
        client.shutdown()  # gone without LOGOUT
        assert rig.listener is not None
        stop = asyncio.run_coroutine_threadsafe(rig.listener.stop(), rig.loop)
        with pytest.raises(TimeoutError):
            stop.result(0.5)  # the stop waits for the session, which waits for its write
        gate.open.set()
        stop.result(60)
        assert gate.events == ["write started", "written"]
        assert _entries(rig) == 0 and _chunks(rig) == 1
    finally:
        for rest in (fast_iter, slow_iter):
            for _ in rest:
                pass


def test_a_write_dying_in_its_transaction_leaves_the_entries_for_the_next_process(
    rigs: tuple[ImapRig, ImapRig], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    slow, rig = rigs
    expected = _fill(slow, rig)

    def killed(*_args: object) -> None:  # after the chunks' insert, in the same transaction
        raise RuntimeError("process killed")

    monkeypatch.setattr(_sortchunks, "drop_folded", killed)
    client = _login(rig)
    with caplog.at_level(logging.ERROR):
        assert _answers(client) == expected  # the answers do not depend on the write
        client.logout()
    assert "deferred write" in caplog.text
    assert _entries(rig) == _COUNT and _chunks(rig) == 0  # rolled back whole
    monkeypatch.undo()
    _forget_tables()  # the next process folds them
    again = _login(rig)
    assert _answers(again) == expected
    again.logout()  # OK once its write (folding them) is in
    assert _entries(rig) == 0 and _chunks(rig) == 1
