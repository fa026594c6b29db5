"""NOTIFY's STATUS and LIST responses name a folder as LIST does: in NFC, also for a
folder stored in NFD before names were normalised (RFC 9051 5.1), in both revisions;
a NOTIFY naming the folder in either form watches it. Two sessions of one user from
one address: one watches, the other appends, renames and deletes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from cryptmail.crypto import context
from cryptmail.db import tables as t
from cryptmail.keys import unlock_account
from cryptmail.secret import Password
from cryptmail.store import create_mailbox

from ...raw_client import RawClient
from ...server_rig import PASSWORD, USER, ImapRig, start_rig

NFC, NFD = "Café", "Cafe\u0301"
NFC_WIRE = b'"Caf\xc3\xa9"'  # a rev2 session's quoted UTF-8


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path, **{"imap.max_connections_per_ip": 8})


def _store_nfd_folder(rig: ImapRig) -> None:
    """The folder's row as a cryptmail before names were normalised wrote it: its
    name and keyed lookup in NFD."""

    async def work() -> None:
        account, _slot = await unlock_account(
            rig.engine, USER, Password.from_str(PASSWORD), rig.config.crypto
        )
        user_id = account.user.id
        async with rig.engine.begin() as conn:
            box = await create_mailbox(conn, account, "Placeholder")
            await conn.execute(
                update(t.cm_mailboxes)
                .where(t.cm_mailboxes.c.id == box.id)
                .values(
                    name_lookup=account.fields.lookup(NFD.encode(), b"mailbox-name|%d" % user_id),
                    name_sealed=account.fields.seal(
                        NFD.encode(), context("cm_mailboxes.name_sealed", box.id)
                    ),
                )
            )

    rig.run(work())


def _rev2(rig: ImapRig) -> RawClient:
    client = RawClient.logged_in(rig.port, USER)
    _, done = client.ask(b"ENABLE IMAP4rev2")
    assert b" OK " in done, done
    return client


@pytest.mark.parametrize("given", [NFC, NFD])
def test_notify_names_a_folder_stored_in_nfd_as_list_does(rig: ImapRig, given: str) -> None:
    _store_nfd_folder(rig)
    watcher, other = _rev2(rig), _rev2(rig)
    listed, _ = watcher.ask(b'LIST "" Caf*')
    assert listed == [b'* LIST (\\HasNoChildren) "/" ' + NFC_WIRE]

    # NOTIFY SET STATUS: a STATUS for the folder named in either form, in NFC.
    untagged, done = watcher.ask(
        b'NOTIFY SET STATUS (MAILBOXES "' + given.encode() + b'" (MessageNew MessageExpunge '
        b"MailboxName)) (PERSONAL (MailboxName))"
    )
    assert b" OK " in done, done
    assert len(untagged) == 1, untagged
    assert untagged[0].startswith(b"* STATUS " + NFC_WIRE + b" (MESSAGES 0 UIDNEXT 1 "), untagged

    # Another session's APPEND: the STATUS names it in NFC.
    other.send(b'a1 APPEND "' + NFD.encode() + b'" {13+}\r\nSubject: x\r\n\r\n\r\n')
    assert b" OK " in other.until(b"a1")[1]
    status = watcher.read()
    assert status.startswith(b"* STATUS " + NFC_WIRE + b" (MESSAGES 1 UIDNEXT 2 "), status

    # Renamed away, by the other session: OLDNAME is the NFC name LIST showed.
    _, done = other.ask(b'RENAME "' + NFC.encode() + b'" Renamed')
    assert b" OK " in done, done
    line = watcher.read()
    assert line == b'* LIST (\\HasNoChildren) "/" Renamed ("OLDNAME" (' + NFC_WIRE + b"))"
    for client in (watcher, other):
        client.close()


def test_a_deleted_nfd_folder_is_nonexistent_in_nfc_for_rev1_too(rig: ImapRig) -> None:
    _store_nfd_folder(rig)
    watcher = RawClient.logged_in(rig.port, USER)  # rev1: modified UTF-7 names
    other = _rev2(rig)
    _, done = watcher.ask(b"NOTIFY SET (PERSONAL (MessageNew MessageExpunge MailboxName))")
    assert b" OK " in done, done
    other.send(b'a1 APPEND "' + NFC.encode() + b'" {13+}\r\nSubject: x\r\n\r\n\r\n')
    assert b" OK " in other.until(b"a1")[1]
    status = watcher.read()
    assert status.startswith(b"* STATUS Caf&AOk- (MESSAGES 1 UIDNEXT 2 "), status
    _, done = other.ask(b'DELETE "' + NFD.encode() + b'"')
    assert b" OK " in done, done
    assert watcher.read() == b'* LIST (\\NonExistent) "/" Caf&AOk-'
    for client in (watcher, other):
        client.close()
