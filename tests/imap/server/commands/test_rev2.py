"""IMAP4rev2 (RFC 9051) over a live server: ENABLE IMAP4rev2 switches one session to
rev2 answers (no RECENT or \\Recent, ESEARCH for SEARCH, a LIST in SELECT, UTF-8 names)
while a rev1 session of the same user beside it keeps the rev1 answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ...raw_client import RawClient
from ...server_rig import ImapRig, start_rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path, **{"imap.max_connections_per_ip": 6})


def _client(rig: ImapRig, rev2: bool) -> RawClient:
    client = RawClient.connect(rig.port)
    client.login()
    if rev2:
        untagged, done = client.ask(b"ENABLE IMAP4rev2")
        assert untagged == [b"* ENABLED IMAP4rev2"] and b" OK " in done
    return client


def test_capability_names_rev2_before_and_after_login(rig: ImapRig) -> None:
    client = RawClient.connect(rig.port)
    assert b" IMAP4rev1 " in client.greeting and b" IMAP4rev2" in client.greeting
    client.login()
    untagged, _ = client.ask(b"CAPABILITY")
    caps = untagged[0].split()
    assert b"IMAP4rev2" in caps and b"NOTIFY" in caps
    _, done = client.ask(b"ENABLE IMAP4rev2")
    untagged, done = client.ask(b"ENABLE IMAP4rev2")
    assert untagged == [b"* ENABLED"], "enabled once only"
    client.close()


def test_select_fetch_search_in_rev2_and_rev1_side_by_side(rig: ImapRig) -> None:
    rig.deliver(b"Subject: one\r\n\r\nfirst\r\n")
    rig.deliver(b"Subject: two\r\n\r\nsecond\r\n")
    modern, legacy = _client(rig, True), _client(rig, False)
    untagged, done = modern.ask(b"SELECT INBOX")
    assert b"[READ-WRITE]" in done
    assert b"* 2 EXISTS" in untagged
    assert b'* LIST () "/" INBOX' in untagged
    assert not any(b"RECENT" in line or b"[UNSEEN " in line for line in untagged), untagged
    untagged, _ = modern.ask(b"FETCH 1:* (FLAGS)")
    assert untagged == [b"* 1 FETCH (FLAGS ())", b"* 2 FETCH (FLAGS ())"]
    untagged, _ = modern.ask(b"SEARCH ALL")
    assert untagged == [b'* ESEARCH (TAG "t5") ALL 1:2']
    untagged, _ = modern.ask(b"UID SEARCH SUBJECT two")
    assert untagged == [b'* ESEARCH (TAG "t6") UID ALL 2']
    untagged, _ = modern.ask(b"SEARCH SUBJECT nothing")
    assert untagged == [b'* ESEARCH (TAG "t7")']  # no ALL for an empty result
    # The rev1 session beside it: RECENT, SEARCH as before.
    untagged, _ = legacy.ask(b"EXAMINE INBOX")
    assert any(line.endswith(b" RECENT") for line in untagged)
    untagged, _ = legacy.ask(b"SEARCH ALL")
    assert untagged == [b"* SEARCH 1 2"]
    # New mail: EXISTS without RECENT in rev2.
    rig.deliver(b"Subject: three\r\n\r\nthird\r\n")
    untagged, _ = modern.ask(b"NOOP")
    assert b"* 3 EXISTS" in untagged and not any(b"RECENT" in x for x in untagged)
    untagged, _ = modern.ask(b"FETCH 3 (FLAGS)")
    assert untagged == [b"* 3 FETCH (FLAGS ())"], "recent to this session, yet no \\Recent"
    untagged, _ = legacy.ask(b"NOOP")
    assert b"* 3 EXISTS" in untagged  # the rev2 session claimed it: not recent here
    # A second SELECT closes the first with [CLOSED], even when it fails.
    untagged, done = modern.ask(b"SELECT Nowhere")
    assert untagged[0].startswith(b"* OK [CLOSED]") and b"[NONEXISTENT]" in done
    modern.close()
    legacy.close()


def test_enable_while_selected_drops_recent_at_once(rig: ImapRig) -> None:
    rig.deliver(b"Subject: one\r\n\r\nfirst\r\n")
    client = _client(rig, False)
    client.ask(b"SELECT INBOX")
    untagged, _ = client.ask(b"FETCH 1 (FLAGS)")
    assert untagged == [b"* 1 FETCH (FLAGS (\\Recent))"]
    client.ask(b"ENABLE IMAP4rev2")
    untagged, _ = client.ask(b"FETCH 1 (FLAGS)")
    assert untagged == [b"* 1 FETCH (FLAGS ())"]
    client.close()


def test_utf8_names_and_status_items(rig: ImapRig) -> None:
    name = "Entwürfe/Ärger ✓".encode()
    modern, legacy = _client(rig, True), _client(rig, False)
    _, done = modern.ask(b'CREATE "' + name + b'"')
    assert b" OK " in done, done
    untagged, _ = modern.ask(b'LIST "" "Entw*"')
    assert b'* LIST (\\HasNoChildren) "/" "' + name + b'"' in untagged
    untagged, _ = legacy.ask(b'LIST "" "Entw*"')
    assert b'* LIST (\\HasNoChildren) "/" "Entw&APw-rfe/&AMQ-rger &JxM-"' in untagged
    modern.send(b't9 APPEND "' + name + b'" (\\Deleted) {13+}\r\nSubject: x\r\n\r\n\r\n')
    _, done = modern.until(b"t9")
    assert b" OK " in done, done
    untagged, _ = modern.ask(b'STATUS "' + name + b'" (MESSAGES DELETED SIZE)')
    assert untagged == [b'* STATUS "' + name + b'" (MESSAGES 1 DELETED 1 SIZE 13)'] or (
        untagged[0].startswith(b'* STATUS "' + name + b'" (MESSAGES 1 DELETED 1 SIZE ')
    )
    # A name that is not UTF-8 is a syntax error in rev2, not a mailbox.
    _, done = modern.ask(b'SELECT "\xff"')
    assert b" BAD " in done
    modern.close()
    legacy.close()
