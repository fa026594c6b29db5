"""NOTIFY (RFC 5465) over a live server: several sessions of one user, one watching
with NOTIFY while the others deliver, flag, expunge, create, rename, delete and
subscribe; refusals that change nothing; the overflow notice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.store import MailboxId

from ...raw_client import RawClient
from ...server_rig import USER, ImapRig, start_rig

WATCH_ALL = (
    b"NOTIFY SET (SELECTED (MessageNew (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]) "
    b"MessageExpunge FlagChange)) (PERSONAL (MessageNew MessageExpunge FlagChange "
    b"MailboxName SubscriptionChange))"
)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path, **{"imap.max_connections_per_ip": 8,
                                      "imap.notify_max_mailboxes": 50,
                                      "imap.notify_max_pending": 20})  # fmt: skip


def _client(rig: ImapRig) -> RawClient:
    client = RawClient.connect(rig.port)
    client.login()
    return client


def _unsolicited(client: RawClient, count: int) -> list[bytes]:
    """The next `count` responses sent without a command, but RECENT (a rev1 extra)."""
    got: list[bytes] = []
    while len(got) < count:
        line = client.response().removesuffix(b"\r\n")
        assert line, "connection closed"
        if not line.endswith(b" RECENT"):
            got.append(line)
    return got


def test_selected_mailbox_events_arrive_between_commands(rig: ImapRig) -> None:
    rig.deliver(b"Subject: one\r\n\r\nfirst\r\n")
    watcher, other = _client(rig), _client(rig)
    watcher.ask(b"ENABLE IMAP4rev2")  # NOTIFY and rev2 together: no RECENT, no \\Recent
    watcher.ask(b"SELECT INBOX")
    untagged, done = watcher.ask(WATCH_ALL)
    assert b" OK " in done, done
    rig.deliver(b"Subject: two\r\n\r\nsecond\r\n")
    got = _unsolicited(watcher, 2)
    assert got[0] == b"* 2 EXISTS"
    assert got[1].startswith(b"* 2 FETCH (UID 2 FLAGS (")
    assert b"Subject: two" in got[1]
    other.ask(b"SELECT INBOX")
    other.ask(b"UID STORE 1 +FLAGS (\\Flagged)")
    assert _unsolicited(watcher, 1) == [b"* 1 FETCH (UID 1 FLAGS (\\Flagged))"]
    other.ask(b"UID STORE 1 +FLAGS (\\Deleted)")
    other.ask(b"EXPUNGE")
    # The \\Deleted FETCH comes first unless both changes land in one wake-up.
    got = _unsolicited(watcher, 1)
    if got[0].startswith(b"* 1 FETCH"):
        assert b"\\Deleted" in got[0]
        got = _unsolicited(watcher, 1)
    assert got == [b"* 1 EXPUNGE"]
    # Still answers commands in between, with nothing left over.
    untagged, done = watcher.ask(b"NOOP")
    assert untagged == [] and b" OK " in done
    watcher.close()
    other.close()


def test_other_mailboxes_get_status_and_list(rig: ImapRig) -> None:
    watcher, other = _client(rig), _client(rig)
    _, done = watcher.ask(WATCH_ALL)
    assert b" OK " in done, done
    other.send(b"a1 APPEND Sent {13+}\r\nSubject: x\r\n\r\n\r\n")
    assert b" OK " in other.until(b"a1")[1]
    status = _unsolicited(watcher, 1)[0]
    assert status.startswith(b"* STATUS Sent (MESSAGES 1 UIDNEXT 2 UIDVALIDITY "), status
    other.ask(b"CREATE Projects")
    assert _unsolicited(watcher, 1) == [b'* LIST (\\HasNoChildren) "/" Projects']
    other.ask(b"RENAME Projects Work/Projects")
    got = _unsolicited(watcher, 2)
    assert b'* LIST (\\HasNoChildren) "/" Work/Projects ("OLDNAME" (Projects))' in got
    assert b'* LIST (\\HasChildren) "/" Work' in got
    other.ask(b"SUBSCRIBE Work")
    assert _unsolicited(watcher, 1) == [b'* LIST (\\Subscribed) "/" Work']
    other.ask(b"DELETE Work/Projects")
    assert _unsolicited(watcher, 1) == [b'* LIST (\\NonExistent) "/" Work/Projects']
    # Its own changes are not told back to it.
    watcher.ask(b"CREATE Mine")
    untagged, _ = watcher.ask(b"NOOP")
    assert untagged == []
    # NOTIFY NONE: nothing more.
    watcher.ask(b"NOTIFY NONE")
    other.ask(b"CREATE Later")
    untagged, _ = watcher.ask(b"NOOP")
    assert untagged == []
    watcher.close()
    other.close()


def test_set_status_and_subtree_filters(rig: ImapRig) -> None:
    watcher, other = _client(rig), _client(rig)
    other.ask(b"CREATE Lists/a")
    other.ask(b"CREATE Lists/b")
    untagged, done = watcher.ask(
        b"NOTIFY SET STATUS (SUBTREE Lists (MessageNew MessageExpunge)) "
        b"(MAILBOXES INBOX (MessageNew MessageExpunge))"
    )
    assert b" OK " in done
    names = sorted(line.split(b" ")[2] for line in untagged)
    assert names == [b"INBOX", b"Lists", b"Lists/a", b"Lists/b"], untagged
    other.send(b"a1 APPEND Sent {13+}\r\nSubject: x\r\n\r\n\r\n")
    other.until(b"a1")
    other.send(b"a2 APPEND Lists/b {13+}\r\nSubject: x\r\n\r\n\r\n")
    other.until(b"a2")
    got = _unsolicited(watcher, 1)[0]
    assert got.startswith(b"* STATUS Lists/b (MESSAGES 1 "), "Sent is not watched"
    watcher.close()
    other.close()


def test_bad_notify_changes_nothing(rig: ImapRig) -> None:
    watcher = _client(rig)
    _, done = watcher.ask(b"NOTIFY SET (PERSONAL (MessageNew MessageExpunge))")
    assert b" OK " in done
    bad = [
        b"NOTIFY",
        b"NOTIFY SET",
        b"NOTIFY BOGUS",
        b"NOTIFY SET (PERSONAL (MessageNew))",
        b"NOTIFY SET (PERSONAL (FlagChange))",
        b"NOTIFY SET (NOWHERE (MessageNew MessageExpunge))",
        b"NOTIFY SET (SELECTED (MailboxName))",
        b"NOTIFY SET (SELECTED NONE) (SELECTED-DELAYED NONE)",
        b"NOTIFY SET (PERSONAL (MessageNew MessageExpunge)",
    ]
    for command in bad:
        _, done = watcher.ask(command)
        assert b" BAD " in done, (command, done)
    for event in (b"AnnotationChange", b"MailboxMetadataChange", b"Bogus"):
        extra = b" MessageNew MessageExpunge" if event == b"AnnotationChange" else b""
        _, done = watcher.ask(b"NOTIFY SET (PERSONAL (" + event + extra + b"))")
        assert b" NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName " in done, done
    many = b" ".join(b"box%d" % i for i in range(5000))
    _, done = watcher.ask(b"NOTIFY SET (MAILBOXES (" + many + b") (MessageNew MessageExpunge))")
    assert b" NO [NOTIFICATIONOVERFLOW] " in done, done
    # The first watch is still in force.
    rig.deliver(b"Subject: x\r\n\r\nx\r\n")
    got = _unsolicited(watcher, 1)[0]
    assert got.startswith(b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 ")
    watcher.close()


def test_watching_names_of_too_many_mailboxes_is_refused(rig: ImapRig) -> None:
    watcher = _client(rig)
    for i in range(50):
        watcher.ask(b"CREATE f%d" % i)
    _, done = watcher.ask(b"NOTIFY SET (PERSONAL (MailboxName))")
    assert b" NO [NOTIFICATIONOVERFLOW] " in done
    _, done = watcher.ask(b"NOTIFY SET STATUS (PERSONAL (MessageNew MessageExpunge))")
    assert b" NO [NOTIFICATIONOVERFLOW] " in done
    # Message events alone keep nothing per mailbox: allowed with any number.
    _, done = watcher.ask(b"NOTIFY SET (PERSONAL (MessageNew MessageExpunge))")
    assert b" OK " in done
    watcher.close()


def test_falling_behind_ends_notifications(rig: ImapRig) -> None:
    watcher = _client(rig)
    _, done = watcher.ask(b"NOTIFY SET (PERSONAL (MessageNew MessageExpunge))")
    assert b" OK " in done

    async def burst() -> None:
        # The change feed hands on a batch of changes in one go, as here: more than
        # notify_max_pending before the session gets to run.
        async with rig.engine.connect() as conn:
            from cryptmail.users import get_user

            user = await get_user(conn, USER)
        for i in range(25):
            rig.bus.publish(user.id, MailboxId(1000 + i))

    rig.run(burst())
    got = _unsolicited(watcher, 1)[0]
    assert got.startswith(b"* OK [NOTIFICATIONOVERFLOW]")
    rig.deliver(b"Subject: x\r\n\r\nx\r\n")
    untagged, _ = watcher.ask(b"NOOP")
    assert untagged == [], "notifications are off after the overflow"
    watcher.close()


def test_selected_delayed_holds_expunges_until_a_command(rig: ImapRig) -> None:
    rig.deliver(b"Subject: one\r\n\r\nfirst\r\n")
    rig.deliver(b"Subject: two\r\n\r\nsecond\r\n")
    watcher, other = _client(rig), _client(rig)
    watcher.ask(b"ENABLE IMAP4rev2")
    watcher.ask(b"SELECT INBOX")
    _, done = watcher.ask(b"NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge FlagChange))")
    assert b" OK " in done
    other.ask(b"SELECT INBOX")
    other.ask(b"UID STORE 1 +FLAGS (\\Deleted)")
    assert _unsolicited(watcher, 1) == [b"* 1 FETCH (UID 1 FLAGS (\\Deleted))"]
    other.ask(b"EXPUNGE")
    rig.deliver(b"Subject: three\r\n\r\nthird\r\n")
    # New mail is told at once, the expunge only once a command allows it.
    assert _unsolicited(watcher, 1) == [b"* 3 EXISTS"]
    untagged, done = watcher.ask(b"NOOP")
    assert untagged == [b"* 1 EXPUNGE"] and b" OK " in done
    watcher.close()
    other.close()


def _append(client: RawClient, mailbox: bytes, subject: bytes) -> bytes:
    message = b"Subject: " + subject + b"\r\n\r\nbody\r\n"
    tag = client.next_tag()
    client.send(tag + b" APPEND " + mailbox + b" {%d+}\r\n" % len(message) + message + b"\r\n")
    untagged, done = client.until(tag)
    assert b" OK [APPENDUID " in done, done
    return b"\n".join(untagged)


def test_own_append_copy_move_send_no_status(rig: ImapRig) -> None:
    """RFC 5465 5: the server SHOULD omit an event this client caused. Its APPENDUID or
    COPYUID told it the new UIDs, so its own APPEND, COPY and MOVE into a watched
    mailbox send it no STATUS, in rev2 and rev1 alike (Dovecot 2.3 sends one: it does
    not follow the SHOULD). Another session's change is told as before; another user's
    is not told at all. Each check of "nothing" is followed by a change the watcher must
    hear, so a STATUS of its own would show up first."""
    rig.add_user("bob@example.org", "bob-password")
    rig.deliver(b"Subject: one\r\n\r\nfirst\r\n")
    modern, legacy, other = _client(rig), _client(rig), _client(rig)
    bob = RawClient.connect(rig.port)
    bob.ask(b'LOGIN bob@example.org "bob-password"')
    modern.ask(b"ENABLE IMAP4rev2")
    for watcher in (modern, legacy, bob):
        watcher.ask(b"SELECT INBOX")
        _, done = watcher.ask(WATCH_ALL)
        assert b" OK " in done, done
    sent_by_other = 0
    for watcher, listener in ((modern, legacy), (legacy, modern)):
        assert b"STATUS" not in _append(watcher, b"Sent", b"mine")
        untagged, done = watcher.ask(b"UID COPY 1 Archive")
        assert b"[COPYUID " in done and not any(b"STATUS" in u for u in untagged), untagged
        # The listener hears both (one STATUS each).
        heard = sorted(line.split(b" (")[0] for line in _unsolicited(listener, 2))
        assert heard == [b"* STATUS Archive", b"* STATUS Sent"], heard
        sent_by_other += 1
        _append(other, b"Drafts", b"theirs %d" % sent_by_other)
        got = _unsolicited(watcher, 1)[0]
        assert got.startswith(b"* STATUS Drafts (MESSAGES %d " % sent_by_other), got
        _unsolicited(listener, 1)
        untagged, _ = watcher.ask(b"NOOP")
        assert untagged == [], untagged
    # MOVE out of the selected INBOX: EXPUNGE for the source, no STATUS for the target.
    untagged, done = legacy.ask(b"UID MOVE 1 Junk")
    assert b" OK " in done
    assert b"* 1 EXPUNGE" in untagged, untagged
    assert not any(line.startswith(b"* STATUS") for line in untagged), untagged
    # The rev2 session hears of the MOVE: the expunge in INBOX, STATUS of Junk.
    heard = _unsolicited(modern, 2)
    assert b"* 1 EXPUNGE" in heard, heard
    assert any(line.startswith(b"* STATUS Junk (MESSAGES 1 ") for line in heard), heard
    _append(other, b"Drafts", b"last")
    assert _unsolicited(legacy, 1)[0].startswith(b"* STATUS Drafts (MESSAGES 3 ")
    untagged, _ = bob.ask(b"NOOP")
    assert untagged == [], "bob hears nothing of alice's folders"
    for client in (modern, legacy, other, bob):
        client.close()
