"""UTF8=ACCEPT (RFC 6855) over a live server: names as UTF-8 once enabled, mUTF-7
before and in other sessions, APPEND UTF8 (~{n}), invalid UTF-8 refused with BAD."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ...raw_client import RawClient
from ...server_rig import ImapRig, start_rig

NAME = "Café/Zürich ✓"
MUTF7 = b"Caf&AOk-/Z&APw-rich &JxM-"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _client(rig: ImapRig, enable: bool) -> RawClient:
    client = RawClient.connect(rig.port)
    client.login()
    if enable:
        untagged, done = client.ask(b"ENABLE UTF8=ACCEPT")
        assert untagged == [b"* ENABLED UTF8=ACCEPT"] and b" OK " in done
    return client


def test_names_are_utf8_once_enabled(rig: ImapRig) -> None:
    modern, legacy = _client(rig, True), _client(rig, False)
    quoted = b'"' + NAME.encode() + b'"'
    _, done = modern.ask(b"CREATE " + quoted)
    assert b" OK " in done, done
    untagged, _ = modern.ask(b'LIST "" "Caf*"')
    assert b'* LIST (\\HasChildren) "/" "Caf\xc3\xa9"' in untagged
    assert b'* LIST (\\HasNoChildren) "/" ' + quoted in untagged
    untagged, _ = legacy.ask(b'LIST "" "Caf*"')  # the other session still sees mUTF-7
    assert b'* LIST (\\HasNoChildren) "/" "' + MUTF7 + b'"' in untagged
    untagged, done = modern.ask(b"STATUS " + quoted + b" (MESSAGES)")
    assert untagged == [b"* STATUS " + quoted + b" (MESSAGES 0)"], done
    _, done = modern.ask(b"SELECT " + quoted)
    assert b" OK " in done
    # "&" is an ordinary character now: this names another (missing) mailbox.
    _, done = modern.ask(b'SELECT "' + MUTF7 + b'"')
    assert b"NO [NONEXISTENT]" in done
    untagged, _ = legacy.ask(b'STATUS "' + MUTF7 + b'" (MESSAGES)')
    assert untagged[0].startswith(b'* STATUS "' + MUTF7)


def test_append_utf8_data_and_literal8(rig: ImapRig) -> None:
    client = _client(rig, True)
    message = "Subject: Grüße\r\nFrom: Zoë <zoë@exämple.org>\r\n\r\nHallo\r\n".encode()
    tag = client.next_tag()
    client.send(
        tag + b" APPEND INBOX (\\Seen) UTF8 (~{%d+}\r\n" % len(message) + message + b")\r\n"
    )
    _, done = client.until(tag)
    assert re.search(rb"OK \[APPENDUID \d+ 1\]", done), done
    # MULTIAPPEND of two UTF8 messages, synchronizing literals.
    tag = client.next_tag()
    client.send(tag + b" APPEND INBOX UTF8 (~{%d}\r\n" % len(message))
    assert client.line().startswith(b"+")
    client.send(message + b") UTF8 (~{%d}\r\n" % len(message))
    assert client.line().startswith(b"+")
    client.send(message + b")\r\n")
    _, done = client.until(tag)
    assert re.search(rb"OK \[APPENDUID \d+ 2:3\]", done), done
    client.ask(b"EXAMINE INBOX")
    untagged, _ = client.ask(b"FETCH 1:3 BODY.PEEK[]")
    assert len(untagged) == 3 and all(message in u for u in untagged)
    for bad in (
        b"APPEND INBOX UTF8 ({3+}\r\nabc)",  # not a literal8
        b"APPEND INBOX UTF8 (~{3+}\r\nabc",  # no ")"
    ):
        _, done = client.ask(bad)
        assert b" BAD " in done, (bad, done)


def test_invalid_utf8_is_bad_and_the_session_goes_on(rig: ImapRig) -> None:
    client = _client(rig, True)
    for command in (b'CREATE "Caf\xe9"', b"SELECT Caf\xc3", b'STATUS "\xff\xfe" (MESSAGES)'):
        _, done = client.ask(command)
        assert b"BAD Mailbox name is not valid UTF-8" in done, (command, done)
    _, done = client.ask(b"NOOP")
    assert b" OK " in done
    untagged, _ = client.ask(b'LIST "" "*"')
    assert not any(b"Caf" in line for line in untagged)


def test_capability_and_enable_twice(rig: ImapRig) -> None:
    client = _client(rig, True)
    untagged, _ = client.ask(b"CAPABILITY")
    assert b"UTF8=ACCEPT" in untagged[0].split()
    untagged, done = client.ask(b"ENABLE UTF8=ACCEPT")
    assert untagged == [b"* ENABLED"] and b" OK " in done
