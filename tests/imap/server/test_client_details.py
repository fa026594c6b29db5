"""Issue "Many clients at once", observations 10 and 12: interoperability details real
clients hit, and hostile but legal input that must get an answer, not a SERVERBUG.

Each test talks to a live server over real sockets (tests/imap/server_rig.py)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.imap.server._session import PREAUTH_LIMITS
from cryptmail.imap.wire._reader import ReaderLimits

from ..raw_client import RawClient
from ..server_rig import PASSWORD, USER, ImapRig, start_rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert logged == [], [r.getMessage() for r in logged]


# -- observation 10: a long ID line -----------------------------------------------------


def _long_id() -> bytes:
    # RFC 2971's own bounds (30 pairs, values up to 1024 octets): about 30 KB on one line.
    pairs = b" ".join(b'"field%02d" "%s"' % (i, b"v" * 1000) for i in range(30))
    return b"ID (" + pairs + b")"


def test_long_id_line_is_accepted_before_and_after_login(rig: ImapRig) -> None:
    command = _long_id()
    assert len(command) > 30_000
    imap = RawClient.connect(rig.port)
    untagged, done = imap.ask(command)  # Roundcube sends ID before it logs in
    assert untagged == [b'* ID ("name" "cryptmail")']
    assert done.endswith(b"OK ID completed.")
    imap.login()
    untagged, done = imap.ask(command)
    assert untagged == [b'* ID ("name" "cryptmail")'] and b" OK " in done
    imap.close()


def test_preauth_command_size_stays_bounded(rig: ImapRig) -> None:
    imap = RawClient.connect(rig.port)
    imap.send(b"a ID (" + b'"f" "' + b"v" * (PREAUTH_LIMITS.max_command + 10) + b'")\r\n')
    assert imap.line().startswith(b"* BYE")
    imap.close()
    # A command within the line bound whose literals push it over the total is refused.
    limits = PREAUTH_LIMITS
    assert limits.max_line >= 32 * 1024 and limits.max_command <= 256 * 1024
    imap = RawClient.connect(rig.port)
    part = b'"f" "' + b"v" * 1000 + b'" '
    imap.send(b"a ID (" + part * (limits.max_command // len(part) + 1) + b")\r\n")
    answer = imap.line()
    assert answer.startswith((b"a BAD", b"* BYE")), answer[:80]
    imap.close()


def test_total_command_size_bounds_lines_and_literals_together() -> None:
    from cryptmail.errors import InputTooLarge
    from cryptmail.imap.wire._reader import CommandReader, CommandReady

    reader = CommandReader(ReaderLimits(max_line=100, max_literal=100, max_command=250))
    # Three lines of 90 bytes joined by non-synchronizing literals: each is in bounds,
    # the command is not.
    reader.feed(b"a1 ID (" + b"x" * 80 + b" {10+}\r\n0123456789" + b"y" * 85 + b" {10+}\r\n")
    reader.feed(b"0123456789" + b"z" * 85 + b")\r\na2 NOOP\r\n")
    with pytest.raises(InputTooLarge) as info:
        while reader.next_event() is not None:
            pass
    assert info.value.recoverable and info.value.tag == "a1"
    event = reader.next_event()
    assert isinstance(event, CommandReady) and event.command.tag == "a2"


# -- observation 10: mailbox names that are not valid modified UTF-7 --------------------

_BAD_NAMES = (b'"&Jjo!"', b'"&AGE"', b'"Caf\xc3\xa9"')


@pytest.mark.parametrize("name", _BAD_NAMES)
def test_undecodable_mailbox_name_is_no_such_mailbox(rig: ImapRig, name: bytes) -> None:
    rig.deliver(b"From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n")
    imap = RawClient.connect(rig.port)
    imap.login()
    for command in (
        b"SELECT " + name,
        b"EXAMINE " + name,
        b"STATUS " + name + b" (MESSAGES)",
        b"DELETE " + name,
        b"RENAME " + name + b" Elsewhere",
        b"SUBSCRIBE " + name,
        b"UNSUBSCRIBE " + name,
        b"APPEND " + name + b" {5+}\r\nhello",
    ):
        untagged, done = imap.ask(command)
        assert done.split(b" ", 2)[1:] == [b"NO", b"[NONEXISTENT] Mailbox does not exist."], (
            command, done,
        )  # fmt: skip
    _, done = imap.ask(b"CREATE " + name)
    assert done.split(b" ", 1)[1] == b"NO Mailbox name is not valid mUTF-7."
    _, done = imap.ask(b"RENAME Archive " + name)
    assert done.split(b" ", 1)[1] == b"NO Mailbox name is not valid mUTF-7."
    for command in (b'LIST "" ' + name, b"LIST " + name + b" *", b'LSUB "" ' + name,
                    b'LIST "" (INBOX ' + name + b")"):  # fmt: skip
        untagged, done = imap.ask(command)
        assert done.split(b" ", 1)[1] in (b"OK List completed.", b"OK Lsub completed.")
        assert untagged == ([b'* LIST (\\HasNoChildren) "/" INBOX'] if b"INBOX" in command
                            else []), command  # fmt: skip
    _, done = imap.ask(b"SELECT INBOX")
    assert b" OK " in done
    for command in (b"COPY 1 " + name, b"MOVE 1 " + name, b"UID COPY 1:* " + name):
        _, done = imap.ask(command)
        assert done.split(b" ", 2)[1:] == [b"NO", b"[NONEXISTENT] Mailbox does not exist."], (
            command, done,
        )  # fmt: skip
    untagged, _ = imap.ask(b"NOOP")
    assert not any(line.endswith(b"EXPUNGE") for line in untagged)  # MOVE moved nothing
    imap.close()


# -- observation 12: RENAME into its own subtree ----------------------------------------


def _names(imap: RawClient) -> list[bytes]:
    untagged, _ = imap.ask(b'LIST "" *')
    return sorted(line.rsplit(b" ", 1)[1] for line in untagged)


def test_rename_into_own_subtree_is_refused(rig: ImapRig) -> None:
    imap = RawClient.connect(rig.port)
    imap.login()
    for name in (b"H", b"H/a/inside", b"Other/x"):
        assert b" OK " in imap.ask(b"CREATE " + name)[1]
    before = _names(imap)
    for old, new in ((b"H", b"H/a/inside"), (b"H", b"H/new"), (b"H/a", b"H/a/b/c")):
        _, done = imap.ask(b"RENAME " + old + b" " + new)
        assert done.split(b" ", 1)[1] == b"NO Can't rename mailbox under itself.", done
    _, done = imap.ask(b"RENAME H H")
    assert done.split(b" ", 2)[1:] == [b"NO", b"[ALREADYEXISTS] Mailbox already exists."]
    # A child that would land on an existing name is refused the same way as the parent.
    _, done = imap.ask(b"RENAME Other H")
    assert done.split(b" ", 2)[1:] == [b"NO", b"[ALREADYEXISTS] Mailbox already exists."]
    assert b" OK " in imap.ask(b"CREATE Third/x")[1]
    _, done = imap.ask(b"RENAME Other Third")
    assert done.split(b" ", 2)[1:] == [b"NO", b"[ALREADYEXISTS] Mailbox already exists."]
    assert _names(imap) == sorted([*before, b"Third", b"Third/x"])
    # Renaming next to itself, or to a name that only starts alike, still works.
    assert b" OK " in imap.ask(b"RENAME H Hx")[1]
    assert b" OK " in imap.ask(b"RENAME Hx/a Hx/b")[1]
    assert {b"Hx", b"Hx/b", b"Hx/b/inside"} <= set(_names(imap))
    imap.close()


# -- observation 12: continuation lines over the limit ----------------------------------


def test_oversized_sasl_response_gets_bad_not_serverbug(
    rig: ImapRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    imap = RawClient.connect(rig.port)
    tag = imap.next_tag()
    imap.send(tag + b" AUTHENTICATE PLAIN\r\n")
    assert imap.line() == b"+ \r\n"
    imap.send(b"A" * (PREAUTH_LIMITS.max_line + 1) + b"\r\n")
    _, done = imap.until(tag)
    assert done.split(b" ", 1)[1].startswith(b"BAD "), done
    # The session reads on, and can still log in.
    tag = imap.next_tag()
    imap.send(tag + b" AUTHENTICATE PLAIN\r\n")
    assert imap.line() == b"+ \r\n"
    imap.send(base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()) + b"\r\n")
    _, done = imap.until(tag)
    assert b" OK " in done, done
    imap.close()
    _no_traceback(caplog)


def test_oversized_line_in_idle_gets_bad_not_serverbug(
    rig: ImapRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    imap = RawClient.connect(rig.port)
    imap.login()
    assert b" OK " in imap.ask(b"SELECT INBOX")[1]
    tag = imap.next_tag()
    imap.send(tag + b" IDLE\r\n")
    assert imap.line().startswith(b"+ ")
    imap.send(b"D" * (ReaderLimits().max_line + 1) + b"\r\n")
    _, done = imap.until(tag)
    assert done.split(b" ", 1)[1].startswith(b"BAD "), done
    _, done = imap.ask(b"NOOP")
    assert b" OK " in done
    # A second session meanwhile was never disturbed.
    other = RawClient.connect(rig.port)
    other.login()
    assert b" OK " in other.ask(b"EXAMINE INBOX")[1]
    other.close()
    imap.close()
    _no_traceback(caplog)
