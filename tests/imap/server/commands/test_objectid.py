"""OBJECTID (RFC 8474) over a live server: MAILBOXID in CREATE, SELECT and STATUS,
EMAILID and THREADID in FETCH, seen the same from several sessions and users."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ...raw_client import RawClient
from ...server_rig import ImapRig, start_rig

OTHER = "bob@example.org"
OTHER_PASSWORD = "bob password 2"
MAILBOXID = re.compile(rb"\[MAILBOXID \(([A-Za-z][A-Za-z0-9_-]{0,254})\)\]")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _client(rig: ImapRig, user: str | None = None) -> RawClient:
    client = RawClient.connect(rig.port)
    if user is None:
        client.login()
    else:
        _, done = client.ask(f'LOGIN {user} "{OTHER_PASSWORD}"'.encode())
        assert b" OK " in done
    return client


def _status_id(client: RawClient, name: bytes) -> bytes:
    untagged, done = client.ask(b"STATUS " + name + b" (MAILBOXID MESSAGES)")
    assert done.endswith(b"OK Status completed."), done
    found = re.search(rb"MAILBOXID \(([^)]+)\)", untagged[0])
    assert found is not None, untagged
    return found.group(1)


def _select_id(client: RawClient, name: bytes) -> bytes:
    untagged, done = client.ask(b"SELECT " + name)
    assert b" OK " in done
    found = [m.group(1) for line in untagged if (m := MAILBOXID.search(line))]
    assert len(found) == 1, untagged
    return found[0]


def _email_ids(client: RawClient) -> list[bytes]:
    untagged, done = client.ask(b"UID FETCH 1:* (EMAILID THREADID)")
    assert b" OK " in done, done
    ids = []
    for line in untagged:
        found = re.search(rb"EMAILID \(([A-Za-z][A-Za-z0-9_-]*)\) THREADID NIL", line)
        assert found is not None, line
        ids.append(found.group(1))
    return ids


def test_capability_after_login(rig: ImapRig) -> None:
    client = RawClient.connect(rig.port)
    assert b"LITERAL-" in client.greeting and b"OBJECTID" not in client.greeting
    client.login()
    untagged, _ = client.ask(b"CAPABILITY")
    caps = untagged[0].split()
    for name in (b"LITERAL+", b"LITERAL-", b"STATUS=SIZE", b"SAVEDATE", b"OBJECTID"):
        assert name in caps


def test_mailboxid_from_create_select_status_and_rename(rig: ImapRig) -> None:
    first, second = _client(rig), _client(rig)
    _, done = first.ask(b"CREATE Projects")
    created = MAILBOXID.search(done)
    assert created is not None, done
    box_id = created.group(1)
    # Every session of the user sees the same id, in SELECT and in STATUS.
    assert _select_id(second, b"Projects") == box_id
    assert _status_id(first, b"Projects") == box_id
    inbox_id = _status_id(first, b"INBOX")
    assert inbox_id != box_id
    # RFC 8474 4: RENAME keeps the MAILBOXID; a new mailbox of the old name gets a new one.
    second.ask(b"UNSELECT")
    _, done = first.ask(b"RENAME Projects Archive/Projects")
    assert b" OK " in done
    assert _status_id(second, b"Archive/Projects") == box_id
    _, done = first.ask(b"CREATE Projects")
    again = MAILBOXID.search(done)
    assert again is not None and again.group(1) not in (box_id, inbox_id)
    # CREATE of an existing name gives no id.
    _, done = first.ask(b"CREATE Projects")
    assert b"NO [ALREADYEXISTS]" in done and b"MAILBOXID" not in done


def test_emailid_kept_by_copy_and_move_distinct_per_message(rig: ImapRig) -> None:
    rig.deliver(b"Subject: one\r\n\r\nsame body\r\n")
    rig.deliver(b"Subject: one\r\n\r\nsame body\r\n")  # the same bytes: another message
    client, other_session = _client(rig), _client(rig)
    client.ask(b"SELECT INBOX")
    ids = _email_ids(client)
    assert len(ids) == 2 and ids[0] != ids[1]
    _, done = client.ask(b"UID COPY 1 Archive")
    assert b" OK " in done
    _, done = client.ask(b"UID MOVE 2 Trash")
    assert b" OK " in done
    other_session.ask(b"SELECT Archive")
    assert _email_ids(other_session) == [ids[0]]
    other_session.ask(b"SELECT Trash")
    assert _email_ids(other_session) == [ids[1]]
    client.ask(b"SELECT INBOX")
    assert _email_ids(client) == [ids[0]]


def test_other_user_gets_other_ids(rig: ImapRig) -> None:
    rig.add_user(OTHER, OTHER_PASSWORD)
    message = b"Subject: both\r\n\r\nto both\r\n"
    rig.deliver(message)
    rig.deliver(message, OTHER)
    alice, bob = _client(rig), _client(rig, OTHER)
    assert _status_id(alice, b"INBOX") != _status_id(bob, b"INBOX")
    alice.ask(b"SELECT INBOX")
    bob.ask(b"SELECT INBOX")
    assert _email_ids(alice) != _email_ids(bob)


def test_status_mailboxid_of_missing_mailbox_and_bad_item(rig: ImapRig) -> None:
    client = _client(rig)
    _, done = client.ask(b"STATUS Nowhere (MAILBOXID)")
    assert b"NO [NONEXISTENT]" in done
    _, done = client.ask(b"STATUS INBOX (MAILBOXID")
    assert b" BAD " in done
    _, done = client.ask(b"FETCH 1 EMAILID")  # no mailbox selected
    assert b" BAD " in done
