"""The selected mailbox's untagged updates, byte for byte, on a live server: keywords in
FLAGS / PERMANENTFLAGS and their announcement, and ``* n RECENT`` after expunges."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..server_rig import ImapRig, start_rig
from .test_server_audit import Raw

SYSTEM = b"\\Answered \\Deleted \\Draft \\Flagged \\Seen"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _session(rig: ImapRig) -> Raw:
    imap = Raw.connect(rig.port)
    imap.login()
    return imap


def _append(imap: Raw, flags: bytes = b"") -> list[bytes]:
    message = b"Subject: x\r\n\r\ny\r\n"
    untagged, done = imap.ask(b"APPEND INBOX (%s) {%d+}\r\n%s" % (flags, len(message), message))
    assert b" OK " in done, done
    return untagged


def _announcement(keywords: bytes) -> list[bytes]:
    return [
        b"* FLAGS (" + SYSTEM + keywords + b")",
        b"* OK [PERMANENTFLAGS (" + SYSTEM + keywords + b" \\*)] Flags permitted.",
    ]


def test_select_lists_keywords_and_announces_new_ones(rig: ImapRig) -> None:
    imap = _session(rig)
    _append(imap, b"$Work")
    _append(imap)
    untagged, _ = imap.ask(b"SELECT INBOX")
    assert untagged[:2] == _announcement(b" $Work")  # RFC 3501 7.1, 7.2.6

    # Dovecot's order: FLAGS and PERMANENTFLAGS first, then the FETCH with the keyword.
    untagged, _ = imap.ask(b"STORE 2 +FLAGS ($Urgent)")
    assert untagged == [*_announcement(b" $Urgent $Work"), b"* 2 FETCH (FLAGS (\\Recent $Urgent))"]
    untagged, _ = imap.ask(b"STORE 1 +FLAGS ($Urgent)")  # known already: no announcement
    assert untagged == [b"* 1 FETCH (FLAGS (\\Recent $Urgent $Work))"]
    untagged, _ = imap.ask(b"STORE 1 +FLAGS.SILENT ($Quiet)")  # silent still announces
    assert untagged == _announcement(b" $Quiet $Urgent $Work")
    untagged, _ = imap.ask(b"STORE 1:2 -FLAGS.SILENT ($Quiet $Urgent $Work)")
    assert untagged == []  # the list only grows while selected, as in Dovecot

    # APPEND into the selected mailbox: FLAGS before EXISTS.
    untagged = _append(imap, b"$New")
    assert untagged == [*_announcement(b" $New $Quiet $Urgent $Work"), b"* 3 EXISTS", b"* 3 RECENT"]

    # Another session's new keyword reaches this one at its next command.
    other = _session(rig)
    other.ask(b"SELECT INBOX")
    other.ask(b"STORE 1 +FLAGS.SILENT ($Theirs)")
    untagged, _ = imap.ask(b"NOOP")
    assert untagged == [
        *_announcement(b" $New $Quiet $Theirs $Urgent $Work"),
        b"* 1 FETCH (UID 1 FLAGS (\\Recent $Theirs))",
    ]
    other.close()

    examine = _session(rig)
    untagged, _ = examine.ask(b"EXAMINE INBOX")
    assert untagged[:2] == [
        b"* FLAGS (" + SYSTEM + b" $New $Theirs)",
        b"* OK [PERMANENTFLAGS ()] Read-only mailbox.",
    ]
    examine.close()
    imap.close()


def test_recent_count_follows_expunges(rig: ImapRig) -> None:
    imap = _session(rig)
    for _ in range(5):
        _append(imap)
    imap.ask(b"CREATE Work")
    untagged, _ = imap.ask(b"SELECT INBOX")
    assert b"* 5 RECENT" in untagged
    imap.ask(b"STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    untagged, _ = imap.ask(b"EXPUNGE")
    assert untagged == [b"* 2 EXPUNGE", b"* 1 EXPUNGE", b"* 3 RECENT"]
    imap.ask(b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    untagged, _ = imap.ask(b"UID EXPUNGE 3")
    assert untagged == [b"* 1 EXPUNGE", b"* 2 RECENT"]
    untagged, _ = imap.ask(b"MOVE 1 Work")
    assert untagged[1:] == [b"* 1 EXPUNGE", b"* 1 RECENT"]
    assert untagged[0].startswith(b"* OK [COPYUID ")

    # New mail another session saw first: EXISTS, but the recent count stays.
    watcher = _session(rig)
    watcher.ask(b"SELECT INBOX")
    _append(watcher)
    watcher.ask(b"NOOP")  # the watcher claims \Recent for the new message
    untagged, _ = imap.ask(b"NOOP")
    assert untagged == [b"* 2 EXISTS"]
    # Expunging a message that is not recent here leaves the count alone.
    imap.ask(b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    untagged, _ = imap.ask(b"EXPUNGE")
    assert untagged == [b"* 2 EXPUNGE"]
    watcher.close()
    imap.close()


def test_exists_after_expunge_and_new_mail_of_the_same_count(rig: ImapRig) -> None:
    """Another session expunges one message and adds one: the count is what it was, but
    the client, having applied the EXPUNGE, knows one message less, so EXISTS must follow
    (RFC 3501 7.4.1: EXPUNGE decrements the count). Found by the multi-session model test."""
    imap = _session(rig)
    for _ in range(3):
        _append(imap)
    imap.ask(b"SELECT INBOX")
    other = _session(rig)
    other.ask(b"SELECT INBOX")
    other.ask(b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.ask(b"EXPUNGE")
    _append(other)
    untagged, _ = imap.ask(b"NOOP")
    assert [u for u in untagged if not u.endswith(b"RECENT")] == [b"* 2 EXPUNGE", b"* 3 EXISTS"]
    # Its EXPUNGE names only sequence numbers the client knows: 3 is the new message.
    other.ask(b"STORE 3 +FLAGS.SILENT (\\Deleted)")
    other.ask(b"EXPUNGE")
    untagged, _ = imap.ask(b"NOOP")
    assert [u for u in untagged if not u.endswith(b"RECENT")] == [b"* 3 EXPUNGE"]
    other.close()
    imap.close()
