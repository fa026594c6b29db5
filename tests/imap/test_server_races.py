# mypy: disable-error-code="index, operator, arg-type, assignment, union-attr"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""Several sessions on one mailbox, on a live server: one session's stale view must not
undo another's change, and what another session expunged is neither an error nor a
corruption alarm."""

from __future__ import annotations

import imaplib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .server_rig import PASSWORD, USER, ImapRig, start_rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _login(rig: ImapRig) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(USER, PASSWORD)
    return imap


def _flags(imap: imaplib.IMAP4, uid: str) -> list[bytes]:
    """The message's flags, sorted, without \\Recent (only the first session has that),
    after a NOOP has told the session what others changed."""
    imap.noop()
    typ, data = imap.uid("FETCH", uid, "(FLAGS)")
    assert typ == "OK", data
    line = next(d for d in data if isinstance(d, bytes) and b"FLAGS" in d)
    flags = line.split(b"FLAGS (", 1)[1].split(b")", 1)[0].split()
    return sorted(f for f in flags if f != b"\\Recent")


def _two_sessions(rig: ImapRig, messages: int = 3) -> tuple[imaplib.IMAP4, imaplib.IMAP4]:
    for n in range(messages):
        rig.deliver(b"Subject: m%d\r\n\r\nbody %d\r\n" % (n, n))
    a, b = _login(rig), _login(rig)
    assert a.select("INBOX")[0] == "OK"
    assert b.select("INBOX")[0] == "OK"
    return a, b


def test_store_applies_deltas_to_the_stored_flags_not_a_stale_copy(rig: ImapRig) -> None:
    # Observation 5: A's cached flags still had \Seen when it added \Answered.
    a, b = _two_sessions(rig)
    assert a.uid("STORE", "3", "FLAGS", "(\\Seen)")[0] == "OK"
    assert b.uid("STORE", "3", "-FLAGS", "(\\Seen)")[0] == "OK"
    typ, data = a.uid("STORE", "3", "+FLAGS", "(\\Answered)")
    assert typ == "OK"
    assert b"\\Seen" not in data[0] and b"\\Answered" in data[0], data
    assert _flags(b, "3") == [b"\\Answered"]
    assert _flags(a, "3") == [b"\\Answered"]
    a.logout()
    b.logout()


def test_concurrent_stores_from_two_sessions_both_land(rig: ImapRig) -> None:
    # Observation 3: +FLAGS from one session and -FLAGS from another at the same time.
    a, b = _two_sessions(rig, messages=1)
    assert a.store("1", "FLAGS", "(\\Seen)")[0] == "OK"
    b.noop()  # b's view now holds \Seen too
    start = threading.Barrier(2)
    replies: dict[str, str] = {}

    def run(name: str, imap: imaplib.IMAP4, mode: str, flag: str) -> None:
        start.wait()
        replies[name] = imap.store("1", mode, flag)[0]

    threads = [
        threading.Thread(target=run, args=("a", a, "+FLAGS", "(\\Answered)")),
        threading.Thread(target=run, args=("b", b, "-FLAGS", "(\\Seen)")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert replies == {"a": "OK", "b": "OK"}
    assert _flags(a, "1") == [b"\\Answered"]
    assert _flags(b, "1") == [b"\\Answered"]
    a.logout()
    b.logout()


def test_many_sessions_adding_keywords_keep_every_one(rig: ImapRig) -> None:
    rig.deliver(b"Subject: m\r\n\r\nbody\r\n")
    sessions = [_login(rig) for _ in range(5)]
    for imap in sessions:
        imap.select("INBOX")
    start = threading.Barrier(len(sessions))

    def run(n: int, imap: imaplib.IMAP4) -> None:
        start.wait()
        assert imap.store("1", "+FLAGS", f"(kw{n})")[0] == "OK"

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in enumerate(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert _flags(sessions[0], "1") == [b"kw%d" % n for n in range(5)]
    for imap in sessions:
        imap.logout()


def test_unchangedsince_sees_another_sessions_change(rig: ImapRig) -> None:
    a, b = _two_sessions(rig, messages=1)
    typ, data = a.fetch("1", "(MODSEQ)")
    modseq = data[0].split(b"MODSEQ (")[1].split(b")")[0].decode()
    assert b.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
    # a's view still has the old modseq: the stored one decides (RFC 7162 3.1.3).
    typ, data = a._simple_command("STORE", "1", f"(UNCHANGEDSINCE {modseq})", "+FLAGS", "(\\Seen)")
    assert typ == "OK"
    assert b"MODIFIED 1" in a.untagged_responses.get("OK", [b""])[-1] or b"MODIFIED 1" in data[0]
    assert _flags(b, "1") == [b"\\Flagged"]
    a.logout()
    b.logout()


def test_expunge_of_a_message_another_session_expunged_succeeds(rig: ImapRig) -> None:
    # Observations 4 and 6.
    a, b = _two_sessions(rig)
    assert a.store("2", "+FLAGS", "(\\Deleted)")[0] == "OK"
    b.noop()  # b sees \Deleted on message 2
    assert a.expunge()[0] == "OK"
    typ, data = b.expunge()
    assert typ == "OK", data
    assert data == [b"2"]  # the EXPUNGE responses imaplib collected
    assert b.select("INBOX")[1] == [b"2"]
    a.logout()
    b.logout()


def test_concurrent_expunges_of_one_message_both_succeed(rig: ImapRig) -> None:
    a, b = _two_sessions(rig)
    assert a.store("1:3", "+FLAGS", "(\\Deleted)")[0] == "OK"
    b.noop()
    start = threading.Barrier(2)
    replies: list[str] = []

    def run(imap: imaplib.IMAP4) -> None:
        start.wait()
        replies.append(imap.expunge()[0])

    threads = [threading.Thread(target=run, args=(s,)) for s in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert replies == ["OK", "OK"]
    assert a.select("INBOX")[1] == [b"0"]
    a.logout()
    b.logout()


def test_move_and_copy_of_a_message_another_session_expunged(rig: ImapRig) -> None:
    # Observation 8 and the MOVE/COPY side of 6.
    a, b = _two_sessions(rig)
    assert a.store("2", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert a.expunge()[0] == "OK"
    typ, data = b.copy("2", "Archive")
    assert typ == "OK", data
    assert b"COPYUID" not in data[0]
    typ, data = b.uid("MOVE", "2", "Archive")
    assert typ == "OK", data
    assert all(b"COPYUID" not in line for line in b.untagged_responses.get("OK", []))
    # A COPY of a live and an expunged message names only the one copied.
    assert a.uid("STORE", "3", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert a.expunge()[0] == "OK"
    typ, data = b._simple_command("UID", "COPY", "1:3", "Archive")  # b sees 1, 3
    assert typ == "OK", data
    assert b"[COPYUID " in data[0] and b"] " in data[0], data
    assert data[0].split(b"]")[0].split()[2] == b"1", data  # source UIDs: 1 alone
    assert b.status("Archive", "(MESSAGES)")[1] == [b"Archive (MESSAGES 1)"]
    a.logout()
    b.logout()


def test_fetch_of_a_message_another_session_expunged_is_no_corruption(
    rig: ImapRig, caplog: pytest.LogCaptureFixture
) -> None:
    # Observation 7.
    a, b = _two_sessions(rig)
    assert a.store("2", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert a.expunge()[0] == "OK"
    with caplog.at_level(logging.INFO):
        typ, data = b.fetch("1:3", "(BODY.PEEK[TEXT])")
    assert typ == "NO"
    assert b"EXPUNGEISSUED" in data[-1], data
    # imaplib leaves the FETCH responses of a NO among the untagged ones.
    bodies = [d[1] for d in b.untagged_responses["FETCH"] if isinstance(d, tuple)]
    assert bodies == [b"body 0\r\n", b"body 2\r\n"]
    assert "restore it from backup" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    a.logout()
    b.logout()


@pytest.mark.timeout(10)
def test_list_with_many_wildcards_answers(rig: ImapRig) -> None:
    # Observation 11: a backtracking regex would take minutes here.
    imap = _login(rig)
    assert imap.create("a" * 200)[0] == "OK"
    typ, data = imap.list('""', "********x")
    assert typ == "OK"
    assert data == [None]
    typ, data = imap.list('""', "%%%%%%%%%%%%%%%%%%%%%%%%a")
    assert typ == "OK" and len(data) == 1
    imap.logout()


def test_a_blob_missing_under_a_live_row_is_still_corruption(
    rig: ImapRig, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = _two_sessions(rig, messages=1)
    for path in rig.blobs.root.rglob("*"):
        if path.is_file() and len(path.name) == 32:
            path.unlink()
    typ, data = b.fetch("1", "(BODY.PEEK[])")
    assert typ == "NO"
    assert b"CORRUPTION" in data[0], data
    assert "restore it from backup" in caplog.text
    a.logout()
    b.logout()
