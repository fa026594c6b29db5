# mypy: disable-error-code="index, operator, arg-type, assignment, union-attr"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""RENAME INBOX, stored subscriptions, LIST-EXTENDED and LIST-STATUS, on a live server."""

from __future__ import annotations

import imaplib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from cryptmail.db import tables as t
from cryptmail.imap.server.commands import _mailboxes
from cryptmail.store import deliver_message
from cryptmail.users import get_user

from ...server_rig import PASSWORD, USER, ImapRig, start_rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _login(rig: ImapRig) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(USER, PASSWORD)
    return imap


def _lines(data: list[bytes | None]) -> list[bytes]:
    return [d for d in data if isinstance(d, bytes)]


def test_rename_inbox_moves_messages_and_keeps_inbox(rig: ImapRig) -> None:
    for n in range(3):
        rig.deliver(b"Subject: m%d\r\n\r\nbody %d\r\n" % (n, n))
    watcher = _login(rig)
    watcher._simple_command("ENABLE", "QRESYNC")
    watcher.select("INBOX")
    imap = _login(rig)
    imap.select("INBOX")
    imap.store("2", "+FLAGS", "(\\Flagged)")
    imap.close()
    typ, data = imap.rename("INBOX", "Old-Inbox")
    assert typ == "OK", data
    assert imap.status("INBOX", "(MESSAGES UIDNEXT)")[1] == [b"INBOX (MESSAGES 0 UIDNEXT 4)"]
    typ, _ = imap.select("Old-Inbox")
    assert typ == "OK"
    typ, data = imap.fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    rows = [d for d in data if isinstance(d, tuple)]
    assert [r[1].strip() for r in rows] == [b"Subject: m0", b"Subject: m1", b"Subject: m2"]
    assert [r[0].split(b"UID ")[1].split()[0] for r in rows] == [b"1", b"2", b"3"]
    assert b"\\Flagged" in rows[1][0]
    # A session that had INBOX selected learns that its messages went away.
    watcher.noop()
    assert watcher.untagged_responses.get("VANISHED") == [b"1:3"]
    # New mail still lands in the (existing, empty) INBOX.
    rig.deliver(b"Subject: new\r\n\r\nx\r\n")
    assert imap.status("INBOX", "(MESSAGES)")[1] == [b"INBOX (MESSAGES 1)"]
    typ, data = imap.rename("INBOX", "Old-Inbox")
    assert typ == "NO" and b"ALREADYEXISTS" in data[0]
    assert imap.status("INBOX", "(MESSAGES)")[1] == [b"INBOX (MESSAGES 1)"]
    imap.logout()
    watcher.logout()


def test_subscriptions_are_stored_sealed(rig: ImapRig) -> None:
    imap = _login(rig)
    typ, data = imap.lsub()
    assert typ == "OK"
    assert sorted(_lines(data)) == sorted(
        b'() "/" ' + n for n in (b"INBOX", b"Sent", b"Drafts", b"Trash", b"Junk", b"Archive")
    )
    imap.create("Secret-Project/Q3")
    assert imap.subscribe("Secret-Project/Q3")[0] == "OK"
    assert imap.subscribe("Not-Yet-There")[0] == "OK"  # RFC 3501 6.3.6 allows it
    assert imap.unsubscribe("Junk")[0] == "OK"
    assert imap.unsubscribe("Junk")[0] == "NO"
    imap.logout()

    again = _login(rig)  # another session sees what the first stored
    typ, data = again.lsub('""', "*")
    names = sorted(line.split(b'"/" ')[1] for line in _lines(data))
    assert names == sorted(
        [b"Archive", b"Drafts", b"INBOX", b"Not-Yet-There", b"Secret-Project/Q3", b"Sent", b"Trash"]
    )
    typ, data = again.lsub('""', "%")
    assert b'(\\Noselect) "/" Secret-Project' in _lines(data)
    typ, data = again._simple_command("LIST", "(SUBSCRIBED)", '""', "*")
    listed = again.untagged_responses.pop("LIST")
    assert b'(\\NonExistent \\Subscribed) "/" Not-Yet-There' in listed
    assert b'(\\HasNoChildren \\Subscribed) "/" Secret-Project/Q3' in listed
    assert not any(b"Junk" in line for line in listed)
    typ, data = again._simple_command("LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', "%")
    listed = again.untagged_responses.pop("LIST")
    assert b'(\\HasChildren) "/" Secret-Project ("CHILDINFO" ("SUBSCRIBED"))' in listed
    again.logout()

    async def sealed_rows() -> list[bytes]:
        async with rig.engine.connect() as conn:
            rows = await conn.execute(t.cm_subscriptions.select())
            return [bytes(r.name_sealed) + bytes(r.name_lookup) for r in rows]

    stored = rig.run(sealed_rows())
    assert len(stored) == 7
    assert not any(b"Secret" in raw or b"Not-Yet" in raw for raw in stored)


def test_list_extended_and_list_status(rig: ImapRig) -> None:
    rig.deliver(b"Subject: a\r\n\r\none\r\n")
    rig.deliver(b"Subject: b\r\n\r\ntwo\r\n")
    imap = _login(rig)
    typ, caps = imap.capability()
    assert b"LIST-EXTENDED" in caps[0] and b"LIST-STATUS" in caps[0]
    imap.select("INBOX")
    imap.store("1", "+FLAGS", "(\\Seen)")
    imap.close()
    imap.create("Work/2026")
    imap.create("Deep/Down")
    imap.delete("Deep")  # "Deep" now exists only as a level of a name
    imap.create("Tmp")
    assert imap.rename("Tmp", "Made/Up")[0] == "OK"  # RFC 3501 6.3.5 creates "Made"
    typ, _ = imap._simple_command("LIST", '""', "*", "RETURN", "(STATUS (MESSAGES UNSEEN))")
    assert typ == "OK"
    statuses = imap.untagged_responses.pop("STATUS")
    assert b"INBOX (MESSAGES 2 UNSEEN 1)" in statuses
    assert b"Sent (MESSAGES 0 UNSEEN 0)" in statuses
    assert b"Deep/Down (MESSAGES 0 UNSEEN 0)" in statuses
    assert not any(s.startswith(b"Deep (") for s in statuses)
    assert b"Made (MESSAGES 0 UNSEEN 0)" in statuses
    listed = imap.untagged_responses.pop("LIST")
    assert b'(\\HasNoChildren) "/" INBOX' in listed
    assert b'(\\HasChildren) "/" Work' in listed
    assert b'(\\Noselect \\HasChildren) "/" Deep' in listed
    typ, _ = imap._simple_command(
        "LIST", "(SPECIAL-USE)", '""', "*", "RETURN", "(SUBSCRIBED CHILDREN)"
    )
    listed = sorted(imap.untagged_responses.pop("LIST"))
    assert len(listed) == 5
    assert b'(\\HasNoChildren \\Trash \\Subscribed) "/" Trash' in listed
    typ, _ = imap._simple_command("LIST", '""', '("INBOX" "Work/%")')
    listed = imap.untagged_responses.pop("LIST")
    assert [line.split(b'"/" ')[1] for line in listed] == [b"INBOX", b"Work/2026"]
    imap.logout()


def test_status_from_the_listing_counts_a_delivery_that_came_after_the_box_was_read(
    rig: ImapRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STATUS with UNSEEN takes its counts from the listing, loaded after the mailbox
    row was read; a delivery committing in between must not give MESSAGES 2 with
    UIDNEXT 2 (the second message would not exist yet)."""
    rig.deliver(b"Subject: one\r\n\r\nfirst\r\n")
    real = _mailboxes.mailbox_listing  # type: ignore[attr-defined]  # -- patched below

    async def delivery_in_between(*args: Any, **kwargs: Any) -> Any:
        async with rig.engine.connect() as conn:
            user = await get_user(conn, USER)

        async def source() -> AsyncIterator[bytes]:
            yield b"Subject: two\r\n\r\nsecond\r\n"

        await deliver_message(rig.engine, rig.blobs, user, source())
        return await real(*args, **kwargs)

    monkeypatch.setattr(_mailboxes, "mailbox_listing", delivery_in_between)
    imap = _login(rig)
    typ, data = imap.status("INBOX", "(MESSAGES UNSEEN UIDNEXT HIGHESTMODSEQ)")
    assert typ == "OK", data
    line = data[0].decode() if isinstance(data[0], bytes) else ""
    words = line[line.index("(") + 1 : line.rindex(")")].split()
    numbers = dict(zip(words[::2], words[1::2], strict=True))
    assert numbers["MESSAGES"] == "2" and numbers["UNSEEN"] == "2"
    assert int(numbers["UIDNEXT"]) == 3, line
    monkeypatch.setattr(_mailboxes, "mailbox_listing", real)
    typ, data = imap.status("INBOX", "(MESSAGES UIDNEXT HIGHESTMODSEQ)")
    again = data[0].decode() if isinstance(data[0], bytes) else ""
    now = again[again.index("HIGHESTMODSEQ ") + 14 : again.rindex(")")]
    assert int(numbers["HIGHESTMODSEQ"]) <= int(now), (line, again)  # never ahead
    imap.logout()
