"""The selected mailbox's untagged updates, byte for byte, on a live server: keywords in
FLAGS / PERMANENTFLAGS and their announcement, and ``* n RECENT`` after expunges."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cryptmail.db import create_engine
from cryptmail.keys import UnlockedAccount, change_password, unlock_account
from cryptmail.secret import Password
from cryptmail.store import (
    MailboxListing,
    MessageRow,
    change_flags,
    deliver_message,
    expunge,
    get_mailbox,
    load_messages,
)
from cryptmail.store import _listing as _listing_module
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import get_user

from ..server_rig import PASSWORD, USER, ImapRig, start_rig
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


def _state(imap: Raw) -> tuple[list[bytes], list[bytes]]:
    """What a fresh SELECT tells, and every message's UID and flags."""
    untagged, done = imap.ask(b"SELECT INBOX")
    assert b" OK " in done, done
    closed = b"* OK [CLOSED] Previous mailbox closed."
    untagged = untagged[untagged.index(closed) + 1 :] if closed in untagged else untagged
    fetched, _ = imap.ask(b"FETCH 1:* (UID FLAGS)")
    return untagged, fetched


def test_a_second_select_sees_what_other_sessions_changed(rig: ImapRig) -> None:
    """SELECT starts from the listing the process keeps for the account: what another
    session changed in between (flags, an expunge, new mail) is in the next SELECT."""
    imap = _session(rig)
    for _ in range(4):
        _append(imap)
    untagged, _ = imap.ask(b"SELECT INBOX")
    assert b"* 4 EXISTS" in untagged and b"* 4 RECENT" in untagged
    assert b"* OK [UNSEEN 1] First unseen." in untagged

    other = _session(rig)
    other.ask(b"SELECT INBOX")
    other.ask(b"STORE 1:2 +FLAGS.SILENT (\\Seen $Done)")
    other.ask(b"STORE 3 +FLAGS.SILENT (\\Deleted)")
    other.ask(b"EXPUNGE")
    _append(other, b"\\Seen")
    untagged, fetched = _state(imap)
    assert untagged[:2] == _announcement(b" $Done")
    assert b"* 4 EXISTS" in untagged and b"* 0 RECENT" in untagged
    assert b"* OK [UNSEEN 3] First unseen." in untagged
    assert fetched == [
        b"* 1 FETCH (UID 1 FLAGS (\\Seen $Done))",
        b"* 2 FETCH (UID 2 FLAGS (\\Seen $Done))",
        b"* 3 FETCH (UID 4 FLAGS ())",
        b"* 4 FETCH (UID 5 FLAGS (\\Seen))",
    ]
    status, _ = other.ask(b"STATUS INBOX (MESSAGES UNSEEN RECENT DELETED)")
    assert status == [b"* STATUS INBOX (MESSAGES 4 UNSEEN 1 RECENT 0 DELETED 0)"]

    # New mail nobody has seen: recent to the next SELECT, and to that one only.
    rig.deliver(b"Subject: new\r\n\r\nnew\r\n")
    untagged, _ = other.ask(b"SELECT INBOX")
    assert b"* 5 EXISTS" in untagged and b"* 1 RECENT" in untagged
    untagged, _ = imap.ask(b"SELECT INBOX")
    assert b"* 5 EXISTS" in untagged and b"* 0 RECENT" in untagged
    other.close()
    imap.close()


def test_a_second_select_sees_what_another_process_changed(rig: ImapRig) -> None:
    """Changes through another engine on the same database (an LMTP worker, another
    node), with no event on this server's bus: the next SELECT reads them all the same."""
    imap = _session(rig)
    for _ in range(3):
        _append(imap)
    imap.ask(b"SELECT INBOX")

    async def elsewhere() -> None:
        engine = create_engine(rig.config.database_url)
        try:
            account, _ = await unlock_account(
                engine, USER, Password.from_str(PASSWORD), rig.config.crypto
            )
            async with engine.connect() as conn:
                box = await get_mailbox(conn, account, "INBOX")
                rows = await load_messages(conn, account, box.id)
                user = await get_user(conn, USER)
            await change_flags(engine, account, box.id, [rows[0].id], "add", frozenset({"$Far"}))
            async with engine.begin() as conn:
                await expunge(conn, box.id, [rows[1]])

            async def source() -> AsyncIterator[bytes]:
                yield b"Subject: far\r\n\r\nfar\r\n"

            await deliver_message(engine, LocalBlobStore(rig.config.blob_path), user, source())
        finally:
            await engine.dispose()

    asyncio.run(elsewhere())
    untagged, fetched = _state(imap)
    assert untagged[:2] == _announcement(b" $Far")
    assert b"* 3 EXISTS" in untagged and b"* 1 RECENT" in untagged
    assert fetched == [
        b"* 1 FETCH (UID 1 FLAGS ($Far))",
        b"* 2 FETCH (UID 3 FLAGS ())",
        b"* 3 FETCH (UID 4 FLAGS (\\Recent))",
    ]
    imap.close()


BOB = "bob@example.org"
BOB_PASSWORD = "bob's own password 1"


def _login_as(rig: ImapRig, email: str, password: str) -> Raw:
    imap = Raw.connect(rig.port)
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    _, done = imap.ask(f'LOGIN {email} "{quoted}"'.encode())
    assert b" OK " in done, done
    return imap


_EARLIER: list[MailboxListing] = []


def _listings_of(email: str) -> list[MailboxListing]:
    """The listings this process holds for `email`'s unlocked account (white box), but
    those of earlier tests' servers that something still holds."""
    gc.collect()
    found = []
    for account_ref, listings in list(_listing_module._listings.values()):
        account = account_ref()
        if account is not None and account.user.email == email:
            found += [x for x in listings.values() if all(x is not y for y in _EARLIER)]
    return found


def _account_of(listing: MailboxListing) -> UnlockedAccount:
    for account_ref, listings in _listing_module._listings.values():
        account = account_ref()
        if account is not None and any(x is listing for x in listings.values()):
            return account
    raise AssertionError("a listing of no account")


def _opened_rows(keyword: str) -> list[MessageRow]:
    """Message rows anywhere in this process whose opened flags carry `keyword`."""
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, MessageRow) and keyword in o.flags]


def _forget_earlier_listings() -> None:
    _EARLIER.extend(_listings_of(USER) + _listings_of(BOB))


def test_phone_and_desktop_of_two_users_share_one_listing_each(rig: ImapRig) -> None:
    """Several sessions of one user (desktop, phone, then a tablet) and of another user,
    all from the one client address: each user's sessions start from one listing, and a
    flag change, an expunge and a delivery in one session are in the next SELECT of a
    new session, while the session that borrowed the rows before keeps its own view."""
    _forget_earlier_listings()
    rig.add_user(BOB, BOB_PASSWORD)
    desktop = _session(rig)
    for _ in range(3):
        _append(desktop)
    bob_desktop = _login_as(rig, BOB, BOB_PASSWORD)
    for _ in range(2):
        _append(bob_desktop)
    desktop.ask(b"SELECT INBOX")
    bob_desktop.ask(b"SELECT INBOX")
    phone = _session(rig)
    untagged, _ = phone.ask(b"SELECT INBOX")
    assert b"* 3 EXISTS" in untagged
    assert len(_listings_of(USER)) == 1 and len(_listings_of(BOB)) == 1
    shared = _listings_of(USER)[0]

    phone.ask(b"STORE 1 +FLAGS.SILENT (\\Seen $Phone)")
    phone.ask(b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    phone.ask(b"EXPUNGE")
    bob_phone = _login_as(rig, BOB, BOB_PASSWORD)
    bob_phone.ask(b"SELECT INBOX")
    bob_phone.ask(b"STORE 1 +FLAGS.SILENT (\\Flagged)")
    rig.deliver(b"Subject: to alice\r\n\r\nhello\r\n")

    tablet = _session(rig)
    untagged, fetched = _state(tablet)
    assert b"* 3 EXISTS" in untagged and b"* 1 RECENT" in untagged
    assert fetched == [
        b"* 1 FETCH (UID 1 FLAGS (\\Seen $Phone))",
        b"* 2 FETCH (UID 3 FLAGS ())",
        b"* 3 FETCH (UID 4 FLAGS (\\Recent))",
    ]
    assert _listings_of(USER) == [shared]  # brought up to date, not loaded again
    bob_tablet = _login_as(rig, BOB, BOB_PASSWORD)
    _, fetched = _state(bob_tablet)
    assert fetched == [b"* 1 FETCH (UID 1 FLAGS (\\Flagged))", b"* 2 FETCH (UID 2 FLAGS ())"]

    # The desktop borrowed the rows at its SELECT: it learns each change once, in order.
    untagged, _ = desktop.ask(b"NOOP")
    assert untagged[2:] == [
        b"* 2 EXPUNGE",
        b"* 3 EXISTS",
        b"* 2 RECENT",
        b"* 1 FETCH (UID 1 FLAGS (\\Recent \\Seen $Phone))",
    ]
    fetched, _ = desktop.ask(b"FETCH 1:* (UID FLAGS)")
    assert fetched == [  # its own \Recent; the new message was the tablet's
        b"* 1 FETCH (UID 1 FLAGS (\\Recent \\Seen $Phone))",
        b"* 2 FETCH (UID 3 FLAGS (\\Recent))",
        b"* 3 FETCH (UID 4 FLAGS ())",
    ]
    for client in (desktop, phone, tablet, bob_desktop, bob_phone, bob_tablet):
        client.close()


def test_a_password_change_drops_the_listing_and_what_it_held(rig: ImapRig) -> None:
    """The listings hold opened flags: they go with the unlocked account when a password
    change ends the user's sessions, and nothing they held stays referenced."""
    _forget_earlier_listings()
    rig.add_user(BOB, BOB_PASSWORD)
    desktop, phone = _session(rig), _session(rig)
    _append(desktop, b"$Secret")
    desktop.ask(b"SELECT INBOX")
    phone.ask(b"SELECT INBOX")
    bob = _login_as(rig, BOB, BOB_PASSWORD)
    bob.ask(b"SELECT INBOX")
    listings = _listings_of(USER)
    assert len(listings) == 1
    listing = weakref.ref(listings[0])
    account = weakref.ref(_account_of(listings[0]))
    del listings
    assert _opened_rows("$Secret")  # the check below can see them
    rig.run(
        change_password(
            rig.engine,
            USER,
            Password.from_str(PASSWORD),
            Password.from_str("the new password 2"),
            rig.config.crypto,
        )
    )
    for client in (desktop, phone):  # ended by the credential watcher
        client.sock.settimeout(30)
        while client.line():
            pass
        client.close()
    deadline = time.monotonic() + 30
    while (listing() is not None or account() is not None) and time.monotonic() < deadline:
        rig.run(asyncio.sleep(0.05))  # let the server finish closing the sessions
        gc.collect()
    assert listing() is None and account() is None
    assert _opened_rows("$Secret") == []
    assert _listings_of(USER) == []
    assert len(_listings_of(BOB)) == 1  # another user's view stays
    _, done = bob.ask(b"NOOP")
    assert b" OK " in done
    bob.close()
