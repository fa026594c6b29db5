"""SEARCHRES (RFC 5182) and CONTEXT=SEARCH / CONTEXT=SORT (RFC 5267) on the live server.

Several sessions of one user (and a second user) on one client address: a saved
result used by every command that takes a set, live searches updated by another
session's flag changes, by delivered mail and by expunges, bad input refused with
nothing changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ...raw_client import RawClient
from ...server_rig import ImapRig, start_rig

OTHER = "bob@example.org"
OTHER_PASSWORD = "bob password 2"


def _message(index: int) -> bytes:
    head = b"Subject: m%d\r\nFrom: a@example.org\r\n" % index
    return head + b"Date: Mon, %d Jan 2024 10:00:00 +0000\r\n\r\nbody %d\r\n" % (20 - index, index)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _client(rig: ImapRig, select: bytes | None = b"SELECT INBOX") -> RawClient:
    client = RawClient.connect(rig.port)
    client.login()
    if select is not None:
        _, done = client.ask(select)
        assert b" OK " in done, done
    return client


def _ok(client: RawClient, command: bytes) -> list[bytes]:
    untagged, done = client.ask(command)
    assert b" OK " in done, (command, done)
    return untagged


def _status(client: RawClient, command: bytes) -> bytes:
    _, done = client.ask(command)
    return done.split(b" ")[1]


def _esearch(untagged: list[bytes]) -> list[bytes]:
    return [line for line in untagged if line.startswith(b"* ESEARCH")]


def _fetched(untagged: list[bytes]) -> list[int]:
    """The UIDs in FETCH responses that carry a UID item."""
    return [int(m.group(1)) for line in untagged if (m := re.search(rb"\bUID (\d+)", line))]


def _setup(rig: ImapRig, count: int = 6) -> RawClient:
    for index in range(count):
        rig.deliver(_message(index))
    client = _client(rig)
    # Odd UIDs seen, so SEEN / UNSEEN split the mailbox.
    _ok(client, b"UID STORE 1,3,5 +FLAGS.SILENT (\\Seen)")
    return client


# -- SEARCHRES -----------------------------------------------------------------------------


def test_dollar_before_any_save_is_empty(rig: ImapRig) -> None:
    client = _setup(rig)
    assert _ok(client, b"FETCH $ (UID)") == []
    assert _ok(client, b"UID FETCH $ (FLAGS)") == []
    assert _ok(client, b"SEARCH $") == [b"* SEARCH"]


def test_save_without_other_options_sends_no_esearch(rig: ImapRig) -> None:
    client = _setup(rig)
    assert _ok(client, b"SEARCH RETURN (SAVE) SEEN") == []
    assert _fetched(_ok(client, b"FETCH $ (UID)")) == [1, 3, 5]
    assert _fetched(_ok(client, b"UID FETCH $ (FLAGS)")) == [1, 3, 5]
    assert _ok(client, b"SEARCH $") == [b"* SEARCH 1 3 5"]
    assert _ok(client, b"UID SEARCH UID $ NOT 3") == [b"* SEARCH 1 5"]
    assert _ok(client, b"SORT (DATE) UTF-8 $") == [b"* SORT 5 3 1"]


def test_save_min_max_per_rfc(rig: ImapRig) -> None:
    client = _setup(rig)
    assert _ok(client, b"SEARCH RETURN (SAVE MIN) UNSEEN") == [b'* ESEARCH (TAG "t4") MIN 2']
    assert _fetched(_ok(client, b"FETCH $ (UID)")) == [2]
    _ok(client, b"SEARCH RETURN (SAVE MAX MIN) UNSEEN")
    assert _fetched(_ok(client, b"FETCH $ (UID)")) == [2, 6]
    _ok(client, b"SEARCH RETURN (SAVE MIN COUNT) UNSEEN")  # COUNT: every match is saved
    assert _fetched(_ok(client, b"FETCH $ (UID)")) == [2, 4, 6]


def test_dollar_in_store_copy_move_and_expunge(rig: ImapRig) -> None:
    client = _setup(rig)
    _ok(client, b"UID SEARCH RETURN (SAVE) UID 2:3")
    _ok(client, b"STORE $ +FLAGS.SILENT (\\Flagged)")
    assert _ok(client, b"SEARCH FLAGGED") == [b"* SEARCH 2 3"]
    _ok(client, b"UID COPY $ Archive")
    _ok(client, b"UID STORE $ +FLAGS.SILENT (\\Deleted)")
    expunged = _ok(client, b"UID EXPUNGE $")
    assert [line for line in expunged if b"EXPUNGE" in line] == [b"* 3 EXPUNGE", b"* 2 EXPUNGE"]
    # Expunged messages leave the saved result: "$" names nothing now.
    assert _ok(client, b"FETCH $ (UID)") == []
    _ok(client, b"SEARCH RETURN (SAVE) UID 4")
    _ok(client, b"MOVE $ Archive")
    other = _client(rig, b"SELECT Archive")
    assert _ok(other, b"SEARCH ALL") == [b"* SEARCH 1 2 3"]
    assert _ok(client, b"SEARCH ALL") == [b"* SEARCH 1 2 3"]


def test_select_close_unselect_reset_the_saved_result(rig: ImapRig) -> None:
    client = _setup(rig)
    for reset in (b"SELECT INBOX", b"EXAMINE INBOX", b"UNSELECT", b"CLOSE"):
        _ok(client, b"SEARCH RETURN (SAVE) ALL")
        assert len(_ok(client, b"FETCH $ (UID)")) == 6
        _ok(client, reset)
        if reset in (b"UNSELECT", b"CLOSE"):
            assert _status(client, b"FETCH $ (UID)") == b"BAD"  # no mailbox
            _ok(client, b"SELECT INBOX")
        assert _ok(client, b"FETCH $ (UID)") == [], reset


def test_bad_input_changes_nothing(rig: ImapRig) -> None:
    client = _setup(rig)
    _ok(client, b"SEARCH RETURN (SAVE) SEEN")
    for bad in (
        b"SEARCH RETURN (SAVE) garbage", b"SEARCH RETURN (SAVE BOGUS) ALL", b"SEARCH RETURN (SAVE",
        b"FETCH 1,$ (UID)", b"FETCH $$ (UID)", b"FETCH $:3 (UID)", b"SEARCH 1:$",
        b"SORT RETURN (SAVE) (DATE) UTF-8 ALL", b"SELECT INBOX (QRESYNC (1 1 $))",
    ):  # fmt: skip
        assert _status(client, bad) == b"BAD", bad
    assert _fetched(_ok(client, b"FETCH $ (UID)")) == [1, 3, 5]
    assert _ok(client, b"SEARCH UNSEEN") == [b"* SEARCH 2 4 6"]


def test_save_survives_refused_searches(rig: ImapRig) -> None:
    client = _setup(rig)
    _ok(client, b"SEARCH RETURN (SAVE) SEEN")
    # A refused charset is a parse-time NO (the command never ran): "$" stays, as
    # Dovecot keeps it.
    assert _status(client, b"SEARCH RETURN (SAVE) CHARSET X-NOSUCH SUBJECT m") == b"NO"
    assert _fetched(_ok(client, b"FETCH $ (UID)")) == [1, 3, 5]
    # So does a SEARCH without SAVE, and a BAD one.
    _ok(client, b"SEARCH UNSEEN")
    assert _status(client, b"SEARCH RETURN (SAVE) UNSEEN )") == b"BAD"
    assert _fetched(_ok(client, b"FETCH $ (UID)")) == [1, 3, 5]


def test_pipelined_commands_wait_for_the_save(rig: ImapRig) -> None:
    client = _setup(rig)
    client.send(
        b"p1 SEARCH RETURN (SAVE) UNSEEN\r\np2 UID FETCH $ (UID)\r\n"
        b"p3 STORE $ +FLAGS.SILENT (\\Answered)\r\np4 SEARCH ANSWERED\r\n"
    )
    assert client.until(b"p1")[0] == []
    assert _fetched(client.until(b"p2")[0]) == [2, 4, 6]
    client.until(b"p3")
    assert client.until(b"p4")[0] == [b"* SEARCH 2 4 6"]


def test_saved_results_are_per_session_and_per_user(rig: ImapRig) -> None:
    first = _setup(rig)
    second = _client(rig)
    rig.add_user(OTHER, OTHER_PASSWORD)
    rig.deliver(_message(9), OTHER)
    third = RawClient.connect(rig.port)
    assert b" OK " in third.ask(f'LOGIN {OTHER} "{OTHER_PASSWORD}"'.encode())[1]
    _ok(third, b"SELECT INBOX")
    _ok(first, b"SEARCH RETURN (SAVE) SEEN")
    _ok(second, b"SEARCH RETURN (SAVE) UNSEEN")
    _ok(third, b"SEARCH RETURN (SAVE) ALL")
    assert _fetched(_ok(first, b"FETCH $ (UID)")) == [1, 3, 5]
    assert _fetched(_ok(second, b"FETCH $ (UID)")) == [2, 4, 6]
    assert _fetched(_ok(third, b"FETCH $ (UID)")) == [1]


# -- CONTEXT=SEARCH / CONTEXT=SORT -----------------------------------------------------------


def test_partial_ranges(rig: ImapRig) -> None:
    client = _setup(rig)
    assert _ok(client, b"UID SEARCH RETURN (PARTIAL 1:2) ALL") == [
        b'* ESEARCH (TAG "t4") UID PARTIAL (1:2 1:2)'
    ]
    assert _ok(client, b"SEARCH RETURN (PARTIAL 3:2 COUNT) UNSEEN") == [
        b'* ESEARCH (TAG "t5") PARTIAL (2:3 4,6) COUNT 3'
    ]
    assert _ok(client, b"SEARCH RETURN (PARTIAL 10:4294967295) ALL") == [
        b'* ESEARCH (TAG "t6") PARTIAL (10:4294967295 NIL)'
    ]
    assert _ok(client, b"SORT RETURN (PARTIAL 1:3) (DATE) UTF-8 ALL") == [
        b'* ESEARCH (TAG "t7") PARTIAL (1:3 6,5,4)'
    ]
    for bad in (
        b"SEARCH RETURN (PARTIAL 0:0) ALL", b"SEARCH RETURN (PARTIAL 1:4294967296) ALL",
        b"SEARCH RETURN (PARTIAL 1:2 ALL) ALL", b"SEARCH RETURN (PARTIAL 1) ALL",
        b"SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL", b"SEARCH RETURN (PARTIAL -1:2) ALL",
        b"SORT RETURN (PARTIAL 0:1) (DATE) UTF-8 ALL",
    ):  # fmt: skip
        assert _status(client, bad) == b"BAD", bad


def test_update_follows_another_sessions_flags_and_expunges(rig: ImapRig) -> None:
    watcher = _setup(rig)
    other = _client(rig)
    assert _ok(watcher, b"UID SEARCH RETURN (UPDATE) UNSEEN") == [b'* ESEARCH (TAG "t4") UID']
    assert _ok(watcher, b"SEARCH RETURN (UPDATE COUNT) SEEN") == [b'* ESEARCH (TAG "t5") COUNT 3']
    _ok(other, b"UID STORE 2 +FLAGS.SILENT (\\Seen)")
    noop = _ok(watcher, b"NOOP")
    assert b'* ESEARCH (TAG "t4") UID REMOVEFROM (0 2)' in noop
    assert b'* ESEARCH (TAG "t5") ADDTO (0 2)' in noop
    # Our own STORE updates too, right after its FETCH.
    store = _ok(watcher, b"UID STORE 1 -FLAGS (\\Seen)")
    assert store[1:] == [
        b'* ESEARCH (TAG "t4") UID ADDTO (0 1)',
        b'* ESEARCH (TAG "t5") REMOVEFROM (0 1)',
    ]
    _ok(other, b"UID STORE 4 +FLAGS.SILENT (\\Deleted)")
    _ok(other, b"UID EXPUNGE 4")
    noop = _ok(watcher, b"NOOP")
    # The sequence-number context hears of the loss before the EXPUNGE renumbers.
    assert noop.index(b'* ESEARCH (TAG "t4") UID REMOVEFROM (0 4)') < noop.index(b"* 4 EXPUNGE")
    assert not any(b'TAG "t5"' in line for line in noop)
    assert _ok(watcher, b"NOOP") == []


def test_update_hears_lmtp_delivery_in_idle(rig: ImapRig) -> None:
    watcher = _setup(rig)
    _ok(watcher, b"UID SEARCH RETURN (UPDATE) UNSEEN")
    watcher.send(b"i1 IDLE\r\n")
    assert watcher.line().startswith(b"+")
    rig.deliver(_message(7))
    seen = [watcher.line() for _ in range(3)]
    assert b"* 7 EXISTS\r\n" in seen
    assert b'* ESEARCH (TAG "t4") UID ADDTO (0 7)\r\n' in seen
    watcher.send(b"DONE\r\n")
    watcher.until(b"i1")


def test_cancelupdate_and_the_bound(rig: ImapRig) -> None:
    watcher = _setup(rig)
    other = _client(rig)
    for _ in range(8):
        _ok(watcher, b"UID SEARCH RETURN (UPDATE) UNSEEN")
    refused = _ok(watcher, b"UID SEARCH RETURN (UPDATE MIN) UNSEEN")
    assert refused[0] == b'* NO [NOUPDATE "t12"] Too many live searches; cancel one first.'
    assert refused[1] == b'* ESEARCH (TAG "t12") UID MIN 2'
    assert _ok(watcher, b"UID SEARCH RETURN (UPDATE PARTIAL 1:2) UNSEEN")[0].startswith(
        b'* NO [NOUPDATE "t13"]'
    )
    assert _status(watcher, b'CANCELUPDATE "nosuch"') == b"NO"
    assert _status(watcher, b'CANCELUPDATE "t4" "nosuch"') == b"NO"  # changes nothing
    assert _status(watcher, b"CANCELUPDATE") == b"BAD"
    assert _status(watcher, b"CANCELUPDATE t3") == b"BAD"
    _ok(watcher, b'CANCELUPDATE "t4" "t5" "t6" "t7" "t8" "t9" "t10"')
    _ok(other, b"UID STORE 2 +FLAGS.SILENT (\\Seen)")
    assert _esearch(_ok(watcher, b"NOOP")) == [b'* ESEARCH (TAG "t11") UID REMOVEFROM (0 2)']
    # SELECT ends every live search.
    _ok(watcher, b"SELECT INBOX")
    _ok(other, b"UID STORE 4 +FLAGS.SILENT (\\Seen)")
    assert not any(b"ESEARCH" in line for line in _ok(watcher, b"NOOP"))
    assert _status(watcher, b'CANCELUPDATE "t11"') == b"NO"


def test_sort_update_positions(rig: ImapRig) -> None:
    watcher = _setup(rig)
    other = _client(rig)
    # Dates fall with the index: DATE order is 6 5 4 3 2 1 by UID.
    assert _ok(watcher, b"UID SORT RETURN (UPDATE ALL) (DATE) UTF-8 UNSEEN") == [
        b'* ESEARCH (TAG "t4") UID ALL 6,4,2'
    ]
    _ok(other, b"UID STORE 4 +FLAGS.SILENT (\\Seen)")
    assert _esearch(_ok(watcher, b"NOOP")) == [b'* ESEARCH (TAG "t4") UID REMOVEFROM (2 4)']
    _ok(other, b"UID STORE 1,3 -FLAGS.SILENT (\\Seen)")
    # Result becomes 6 3 2 1: 3 lands at position 2, 1 at position 4.
    assert _esearch(_ok(watcher, b"NOOP")) == [b'* ESEARCH (TAG "t4") UID ADDTO (2 3 4 1)']
    rig.deliver(_message(15))  # the oldest date: sorts first
    noop = _ok(watcher, b"NOOP")
    assert noop[-1] == b'* ESEARCH (TAG "t4") UID ADDTO (1 7)'
    assert _ok(watcher, b"UID SORT (DATE) UTF-8 UNSEEN") == [b"* SORT 7 6 3 2 1"]
