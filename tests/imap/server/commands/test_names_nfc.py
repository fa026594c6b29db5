"""Mailbox names in Unicode NFC (RFC 9051 5.1) where LIST, LSUB and the subscriptions
meet them, on a live server: a pattern in another normal form matches the stored NFC
names (RFC 3501 6.3.8 and RFC 5258 selection options), a name subscribed in NFD is the
NFC name, and rows stored un-normalised before names were (folders and subscriptions)
are listed once, in NFC. Several sessions of one user from one address, rev2 (UTF-8
names) and rev1 (modified UTF-7) side by side, and a second user."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path

import imapclient
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptmail.crypto import context
from cryptmail.db import tables as t
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.secret import Password
from cryptmail.store import create_mailbox, list_subscriptions, subscribe

from ...raw_client import RawClient
from ...server_rig import PASSWORD, USER, ImapRig, start_rig

NFC, NFD = "Café", "Cafe\u0301"
BOB = "bob@example.org"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path, **{"imap.max_connections_per_ip": 8})


def _client(rig: ImapRig, utf8: bool, user: str = USER) -> RawClient:
    client = RawClient.logged_in(rig.port, user)
    if utf8:
        _, done = client.ask(b"ENABLE IMAP4rev2")
        assert b" OK " in done, done
    return client


def _ok(client: RawClient, command: bytes) -> list[bytes]:
    untagged, done = client.ask(command)
    assert b" OK " in done, (command, done)
    return untagged


def _q(name: str) -> bytes:
    return b'"' + name.encode() + b'"'


def _account(rig: ImapRig, user: str = USER) -> UnlockedAccount:
    async def work() -> UnlockedAccount:
        account, _slot = await unlock_account(
            rig.engine, user, Password.from_str(PASSWORD), rig.config.crypto
        )
        return account

    return rig.run(work())


def test_list_and_lsub_patterns_in_nfd_match_the_nfc_names(rig: ImapRig) -> None:
    """RFC 9051 5.1: the server stores NFC, so it must take the other forms wherever a
    name is given; a LIST or LSUB pattern (RFC 3501 6.3.8/6.3.9) is one. NFD in UTF-8
    (rev2) and in modified UTF-7 (rev1), wildcards after the combining mark, and a
    reference that ends where the pattern's combining mark begins."""
    modern, legacy = _client(rig, True), _client(rig, False)
    for name in (b"Caf\xc3\xa9/Cr\xc3\xa8me", b"Caf\xc3\xa9/Th\xc3\xa9", b"Cafe"):
        _ok(modern, b'CREATE "' + name + b'"')
    _ok(modern, b'SUBSCRIBE "Caf\xc3\xa9/Th\xc3\xa9"')
    nfc = b'"Caf\xc3\xa9"'
    assert _ok(modern, b'LIST "" ' + _q(NFD)) == [b'* LIST (\\HasChildren) "/" ' + nfc]
    assert _ok(modern, b'LIST "" ' + _q(NFD + "/%")) == [
        b'* LIST (\\HasNoChildren) "/" "Caf\xc3\xa9/Cr\xc3\xa8me"',
        b'* LIST (\\HasNoChildren) "/" "Caf\xc3\xa9/Th\xc3\xa9"',
    ]
    # "Crème" in NFD: the grave accent of the pattern follows the literal e.
    assert _ok(modern, b'LIST "" ' + _q(NFD + "/Cre\u0300*")) == [
        b'* LIST (\\HasNoChildren) "/" "Caf\xc3\xa9/Cr\xc3\xa8me"'
    ]
    # Reference "Cafe" and pattern "\u0301/T*": joined, they are NFD "Café/T*".
    assert _ok(modern, b'LIST "Cafe" ' + _q("\u0301/T*")) == [
        b'* LIST (\\HasNoChildren) "/" "Caf\xc3\xa9/Th\xc3\xa9"'
    ]
    # The ASCII "Cafe" is another folder: an NFD pattern never matches it, nor it NFC.
    assert _ok(modern, b'LIST "" "Cafe"') == [b'* LIST (\\HasNoChildren) "/" Cafe']
    # rev1: NFD "Café" in modified UTF-7 is "Cafe&AwE-".
    assert _ok(legacy, b'LIST "" Cafe&AwE-/%') == [
        b'* LIST (\\HasNoChildren) "/" Caf&AOk-/Cr&AOg-me',
        b'* LIST (\\HasNoChildren) "/" Caf&AOk-/Th&AOk-',
    ]
    assert _ok(legacy, b'LSUB "" Cafe&AwE-*') == [b'* LSUB () "/" Caf&AOk-/Th&AOk-']
    assert _ok(legacy, b'LSUB "" Cafe&AwE-%') == [b'* LSUB (\\Noselect) "/" Caf&AOk-']
    assert _ok(modern, b'LSUB "" ' + _q(NFD + "/*")) == [b'* LSUB () "/" "Caf\xc3\xa9/Th\xc3\xa9"']
    for client in (modern, legacy):
        client.close()


def test_list_extended_selection_options_with_nfd_patterns(rig: ImapRig) -> None:
    """RFC 5258 sections 3 and 4 (SUBSCRIBED, RECURSIVEMATCH and CHILDINFO, RETURN
    CHILDREN and SUBSCRIBED) and RFC 5819 (RETURN STATUS) with a pattern in NFD: the
    same answers as with the NFC pattern."""
    modern = _client(rig, True)
    for name in ("Café/Thé", "Café/Crème"):
        _ok(modern, b"CREATE " + _q(name))
    _ok(modern, b"SUBSCRIBE " + _q("Café/Thé"))
    _ok(modern, b"SUBSCRIBE " + _q("Café/Gone"))  # subscribed, never created
    commands = [
        b'LIST (SUBSCRIBED) "" %s',
        b'LIST (SUBSCRIBED RECURSIVEMATCH) "" %s',
        b'LIST "" %s RETURN (SUBSCRIBED CHILDREN)',
        b'LIST "" %s RETURN (STATUS (MESSAGES UIDNEXT))',
    ]
    expected = {
        commands[0]: [
            b'* LIST (\\NonExistent \\Subscribed) "/" "Caf\xc3\xa9/Gone"',
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "Caf\xc3\xa9/Th\xc3\xa9"',
        ],
        commands[1]: [b'* LIST (\\HasChildren) "/" "Caf\xc3\xa9" ("CHILDINFO" ("SUBSCRIBED"))'],
    }
    patterns = {
        commands[0]: "Café/*",
        commands[1]: "Café",
        commands[2]: "Café*",
        commands[3]: "Café/%",
    }
    for command, pattern in patterns.items():
        nfc_pattern = pattern
        nfd_pattern = pattern.replace("é", "e\u0301")
        assert nfc_pattern != nfd_pattern
        with_nfc = _ok(modern, command % _q(nfc_pattern))
        with_nfd = _ok(modern, command % _q(nfd_pattern))
        assert with_nfd == with_nfc, command
        assert with_nfc, command
        if command in expected:
            assert sorted(with_nfc) == sorted(expected[command]), with_nfc
    listed = _ok(modern, commands[2] % _q("Cafe\u0301*"))
    assert b'* LIST (\\HasNoChildren \\Subscribed) "/" "Caf\xc3\xa9/Th\xc3\xa9"' in listed
    statuses = [line for line in _ok(modern, commands[3] % _q(NFD + "/%")) if b"STATUS" in line]
    assert len(statuses) == 2 and all(b"(MESSAGES 0 UIDNEXT 1)" in s for s in statuses)
    modern.close()


def test_a_name_subscribed_in_nfd_is_the_nfc_name_in_every_session(rig: ImapRig) -> None:
    """SUBSCRIBE in NFD, LSUB and LIST (SUBSCRIBED) in another session of the user (rev1,
    modified UTF-7) show the NFC name once; subscribing the NFC form again adds nothing,
    UNSUBSCRIBE in either form removes it for all. Bob's subscriptions are his own."""
    rig.add_user(BOB, PASSWORD)
    first, second, third = _client(rig, True), _client(rig, False), _client(rig, True)
    bob = _client(rig, True, BOB)
    _ok(first, b"CREATE " + _q(NFC))
    _ok(first, b"SUBSCRIBE " + _q(NFD))
    _ok(third, b"SUBSCRIBE " + _q(NFC))
    _ok(second, b"SUBSCRIBE Cafe&AwE-")  # NFD in modified UTF-7
    assert _ok(second, b'LSUB "" Caf*') == [b'* LSUB () "/" Caf&AOk-']
    assert _ok(third, b'LSUB "" *').count(b'* LSUB () "/" "Caf\xc3\xa9"') == 1
    assert _ok(second, b'LIST (SUBSCRIBED) "" Caf*') == [
        b'* LIST (\\HasNoChildren \\Subscribed) "/" Caf&AOk-'
    ]
    assert _ok(bob, b'LSUB "" Caf*') == []
    _ok(bob, b"SUBSCRIBE " + _q(NFD))
    _, done = third.ask(b"UNSUBSCRIBE " + _q(NFD))
    assert b" OK " in done, done
    assert _ok(second, b'LSUB "" Caf*') == []
    assert _ok(first, b'LIST "" Caf* RETURN (SUBSCRIBED)') == [
        b'* LIST (\\HasNoChildren) "/" "Caf\xc3\xa9"'
    ]
    _, done = second.ask(b"UNSUBSCRIBE Caf&AOk-")
    assert b" NO [NONEXISTENT]" in done, done
    assert _ok(bob, b'LSUB "" Caf*') == [b'* LSUB () "/" "Caf\xc3\xa9"']
    for client in (first, second, third, bob):
        client.close()


async def _insert_subscription_as_before(
    conn: AsyncConnection, account: UnlockedAccount, name: str
) -> None:
    """A subscription row as a cryptmail before names were normalised wrote it: the
    name, sealed and keyed, in the form given (here not NFC)."""
    user_id = account.user.id
    lookup = account.fields.lookup(name.encode(), b"subscription|%d" % user_id)
    sealed = account.fields.seal(
        name.encode(), context("cm_subscriptions.name_sealed", user_id, lookup)
    )
    await conn.execute(
        t.cm_subscriptions.insert().values(user_id=user_id, name_lookup=lookup, name_sealed=sealed)
    )


def _store_legacy_forms(rig: ImapRig, account: UnlockedAccount) -> int:
    """A folder and two subscriptions as a cryptmail before names were normalised wrote
    them: the folder's row and one subscription in NFD (name and keyed lookup), and the
    same subscription again in NFC (subscribed later in the other form). Returns the
    number of subscription rows before."""
    user_id = account.user.id

    async def work() -> int:
        async with rig.engine.begin() as conn:
            box = await create_mailbox(conn, account, "Placeholder")
            lookup = account.fields.lookup(NFD.encode(), b"mailbox-name|%d" % user_id)
            await conn.execute(
                update(t.cm_mailboxes)
                .where(t.cm_mailboxes.c.id == box.id)
                .values(
                    name_lookup=lookup,
                    name_sealed=account.fields.seal(
                        NFD.encode(), context("cm_mailboxes.name_sealed", box.id)
                    ),
                )
            )
            before = len(await list_subscriptions(conn, account))  # seeds the defaults
            for name in (NFD, NFD + "/Old"):
                await _insert_subscription_as_before(conn, account, name)
        # The NFC row of the first, as `subscribe` writes it now.
        async with rig.engine.begin() as conn:
            await subscribe(conn, account, NFC)
        return before

    return rig.run(work())


def _subscription_rows(rig: ImapRig, user_id: int) -> int:
    async def work() -> int:
        sub = t.cm_subscriptions
        async with rig.engine.connect() as conn:
            rows = await conn.execute(select(sub.c.name_lookup).where(sub.c.user_id == user_id))
            return len(rows.all())

    return rig.run(work())


def test_rows_stored_before_normalising_are_listed_once_in_nfc(rig: ImapRig) -> None:
    """A folder stored in NFD and a name subscribed in both forms (rows written before
    names were normalised): LIST, LSUB, LIST (SUBSCRIBED), STATUS and SELECT show the NFC
    name once, in both revisions; the duplicate subscription rows are merged into the
    NFC row on read (one row each left, nothing lost), and UNSUBSCRIBE in NFD removes
    the name whose only row was NFD."""
    account = _account(rig)
    before = _store_legacy_forms(rig, account)
    assert _subscription_rows(rig, account.user.id) == before + 3
    modern, legacy = _client(rig, True), _client(rig, False)
    nfc = b'"Caf\xc3\xa9"'
    assert _ok(modern, b'LIST "" Caf*') == [b'* LIST (\\HasNoChildren) "/" ' + nfc]
    assert _ok(legacy, b'LIST "" Caf*') == [b'* LIST (\\HasNoChildren) "/" Caf&AOk-']
    assert sorted(_ok(modern, b'LSUB "" Caf*')) == [
        b'* LSUB () "/" ' + nfc,
        b'* LSUB () "/" "Caf\xc3\xa9/Old"',
    ]
    # Merged: the NFD rows are gone, their names live on in the NFC rows.
    assert _subscription_rows(rig, account.user.id) == before + 2
    assert sorted(_ok(legacy, b'LIST (SUBSCRIBED) "" Caf*')) == [
        b'* LIST (\\HasNoChildren \\Subscribed) "/" Caf&AOk-',
        b'* LIST (\\NonExistent \\Subscribed) "/" Caf&AOk-/Old',
    ]
    assert _ok(legacy, b"STATUS Cafe&AwE- (MESSAGES)") == [b"* STATUS Caf&AOk- (MESSAGES 0)"]
    untagged = _ok(modern, b"SELECT " + _q(NFD))
    assert _oldname(NFC, NFD) in untagged, untagged  # RFC 9051 6.3.2
    untagged = _ok(modern, b"SELECT " + _q(NFC))
    assert b'* LIST () "/" ' + nfc in untagged, untagged
    _ok(legacy, b"UNSUBSCRIBE " + _q(NFD + "/Old").replace(b"e\xcc\x81", b"e&AwE-"))
    assert _ok(modern, b'LSUB "" Caf*') == [b'* LSUB () "/" ' + nfc]
    assert _subscription_rows(rig, account.user.id) == before + 1
    for client in (modern, legacy):
        client.close()


def _oldname(name: str, oldname: str, attributes: bytes = b"()") -> bytes:
    return b"* LIST " + attributes + b' "/" ' + _q(name) + b' ("OLDNAME" (' + _q(oldname) + b"))"


def test_oldname_is_told_as_rfc_9051_says_and_only_to_the_session_that_asked(
    rig: ImapRig,
) -> None:
    """RFC 9051: CREATE (6.3.4) and DELETE (6.3.5) of a denormalised name answer a LIST
    of the normalised name with OLDNAME the name supplied (DELETE's \\NonExistent);
    SELECT and EXAMINE (6.3.2) MUST add OLDNAME to their LIST then; RENAME (6.3.6) when
    either name is denormalised, OLDNAME being the supplied existing name. Names given
    in NFC draw no OLDNAME; a rev1 session (modified UTF-7) never gets one; a UTF8=ACCEPT
    session does; the user's other session hears none of it."""
    modern, other, legacy = _client(rig, True), _client(rig, True), _client(rig, False)
    accept = RawClient.logged_in(rig.port)
    _ok(accept, b"ENABLE UTF8=ACCEPT")
    assert _ok(modern, b"CREATE " + _q(NFD)) == [_oldname(NFC, NFD)]
    assert _ok(modern, b"CREATE " + _q(NFC + "/Thé")) == []  # in NFC already
    for command in (b"SELECT", b"EXAMINE"):
        untagged = _ok(modern, command + b" " + _q(NFD))
        assert [u for u in untagged if u.startswith(b"* LIST")] == [_oldname(NFC, NFD)]
        untagged = _ok(modern, command + b" " + _q(NFC))
        assert [u for u in untagged if u.startswith(b"* LIST")] == [b'* LIST () "/" ' + _q(NFC)]
    _ok(modern, b"UNSELECT")
    # RENAME: the existing name in NFD, the new one in NFC: told, OLDNAME the NFD name.
    assert _ok(modern, b"RENAME " + _q(NFD) + b" " + _q("Thé")) == [_oldname("Thé", NFD)]
    assert _ok(modern, b"RENAME " + _q("Thé") + b" " + _q("Tea")) == []
    told = b'* LIST () "/" ' + _q("Thé") + b' ("OLDNAME" (Tea))'  # an atom when it can be
    assert _ok(accept, b"RENAME Tea " + _q("The\u0301")) == [told]
    # rev1: the same commands in modified UTF-7 NFD, no OLDNAME.
    assert _ok(legacy, b"RENAME Th&AOk- Cafe&AwE-") == []
    assert _ok(legacy, b"SELECT Cafe&AwE-")[-1].startswith(b"* OK [URLMECH")
    _ok(legacy, b"UNSELECT")
    assert _ok(legacy, b"DELETE Cafe&AwE-/Th&AOk-") == []
    nonexistent = b"(\\NonExistent)"
    assert _ok(modern, b"DELETE " + _q(NFD)) == [_oldname(NFC, NFD, nonexistent)]
    # The other session of the user was told none of these (no NOTIFY asked for).
    untagged = _ok(other, b"NOOP")
    assert not [u for u in untagged if b"OLDNAME" in u], untagged
    for client in (modern, other, legacy, accept):
        client.close()


def test_two_folders_stored_in_two_forms_before_normalising_both_stay_listed(
    rig: ImapRig,
) -> None:
    """Before names were normalised a user could make "Café" twice, once per normal
    form: two folders with their own mail. Both stay in the list (the NFC one under its
    name, the other as stored), so neither is lost from view, a pattern in either form
    lists both, and each is selected by the form it is listed under."""
    account = _account(rig)

    async def work() -> None:
        async with rig.engine.begin() as conn:
            await create_mailbox(conn, account, NFC)
            box = await create_mailbox(conn, account, "Placeholder")
            lookup = account.fields.lookup(NFD.encode(), b"mailbox-name|%d" % account.user.id)
            sealed = account.fields.seal(NFD.encode(), context("cm_mailboxes.name_sealed", box.id))
            await conn.execute(
                update(t.cm_mailboxes)
                .where(t.cm_mailboxes.c.id == box.id)
                .values(name_lookup=lookup, name_sealed=sealed)
            )

    rig.run(work())
    modern, legacy = _client(rig, True), _client(rig, False)
    both = sorted(
        [b'* LIST (\\HasNoChildren) "/" ' + _q(NFC), b'* LIST (\\HasNoChildren) "/" ' + _q(NFD)]
    )
    assert sorted(_ok(modern, b'LIST "" Caf*')) == both
    # Either form of the whole name, as pattern, lists both: they are one name in NFC.
    for pattern in (NFC, NFD):
        assert sorted(_ok(modern, b'LIST "" ' + _q(pattern))) == both, pattern
    # Each is selected by the form it is listed under: one message in the NFD folder.
    _, done = legacy.ask(b"APPEND Cafe&AwE- {13+}\r\nSubject: x\r\n\r\n")
    assert b" OK " in done, done
    assert b"* 1 EXISTS" in _ok(modern, b"SELECT " + _q(NFD))
    assert b"* 0 EXISTS" in _ok(modern, b"SELECT " + _q(NFC))
    assert _ok(legacy, b"STATUS Cafe&AwE- (MESSAGES)") == [b"* STATUS Caf&AOk- (MESSAGES 1)"]
    assert _ok(legacy, b"STATUS Caf&AOk- (MESSAGES)") == [b"* STATUS Caf&AOk- (MESSAGES 0)"]
    # LIST-STATUS names each as its LIST line does.
    listed = _ok(legacy, b'LIST "" Caf* RETURN (STATUS (MESSAGES))')
    assert sorted(line for line in listed if line.startswith(b"* STATUS")) == [
        b"* STATUS Caf&AOk- (MESSAGES 0)",
        b"* STATUS Cafe&AwE- (MESSAGES 1)",
    ], listed
    for client in (modern, legacy):
        client.close()


def test_new_names_with_control_characters_are_refused(rig: ImapRig) -> None:
    """RFC 9051 6.3.4: a UTF-8 name that is not Net-Unicode (RFC 5198: no C0 or C1
    control characters) MUST be refused (or converted); CREATE and RENAME answer NO and
    store nothing, in UTF-8 (rev2) and in modified UTF-7 (rev1) alike."""
    modern, legacy = _client(rig, True), _client(rig, False)
    for name in ("Bell\x07", "Next\u0085Line", "Del\x7f"):
        _, done = modern.ask(b"CREATE " + _q(name))
        assert b" NO [CANNOT]" in done, (name, done)
    _, done = legacy.ask(b"CREATE Next&AIU-Line")  # U+0085 in modified UTF-7
    assert b" NO [CANNOT]" in done, done
    _ok(modern, b"CREATE Plain")
    _, done = modern.ask(b"RENAME Plain " + _q("Tab\tName"))
    assert b" NO [CANNOT]" in done, done
    listed = _ok(legacy, b'LIST "" *')
    assert not [line for line in listed if b"Bell" in line or b"Line" in line or b"Tab" in line]
    assert b'* LIST (\\HasNoChildren) "/" Plain' in listed
    for client in (modern, legacy):
        client.close()


def _imaplib_rev2(rig: ImapRig, user: str = USER) -> imaplib.IMAP4:
    """An IMAP4rev2 imaplib session: names go out and come back as UTF-8."""
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(user, PASSWORD)
    assert imap._simple_command("ENABLE", "IMAP4rev2")[0] == "OK"
    imap._encoding = "utf-8"  # type: ignore[attr-defined]  # quoted UTF-8 names from now on
    return imap


def _quoted(name: str) -> str:
    return '"' + name + '"'


def _lines(imap: imaplib.IMAP4, *args: str) -> list[bytes]:
    """One command through imaplib; its LIST and LSUB lines, sorted."""
    typ, data = imap._simple_command(*args)
    assert typ == "OK", (args, data)
    lines: list[bytes] = []
    for name in ("LIST", "LSUB"):
        lines += [d for d in imap.untagged_responses.pop(name, []) if isinstance(d, bytes)]
    return sorted(lines)


def _heard(watcher: imapclient.IMAPClient, wanted: int) -> list[tuple[object, ...]]:
    """What an IDLE session is told, up to `wanted` responses (bounded: a hang fails,
    nothing is timed)."""
    heard: list[tuple[object, ...]] = []
    for _attempt in range(30):
        heard += watcher.idle_check(timeout=2)
        if len(heard) >= wanted:
            break
    return heard


def test_rename_carries_the_subscription_in_any_form_for_every_session(rig: ImapRig) -> None:
    """RENAME moves the subscriptions of the folders it renames (the folder and its
    children) to their new names, whichever normal form they were subscribed in, in the
    rename's transaction; a subscribed name below that names no folder stays. imapclient
    (rev1, NFD names in modified UTF-7, as macOS hands them over) creates and
    subscribes, imaplib (rev2, UTF-8, NFC) renames, a third session in IDLE with NOTIFY
    hears of it; Bob's subscription of the same name is his own."""
    rig.add_user(BOB, PASSWORD)
    mac = imapclient.IMAPClient("127.0.0.1", port=rig.port, ssl=False)
    mac.login(USER, PASSWORD)
    watcher = imapclient.IMAPClient("127.0.0.1", port=rig.port, ssl=False)
    watcher.login(USER, PASSWORD)
    modern, bob = _imaplib_rev2(rig), _imaplib_rev2(rig, BOB)
    mac.create_folder(NFD + "/The\u0301")
    for name in (NFD, NFD + "/Gone"):
        mac.subscribe_folder(name)
    account = _account(rig)

    async def subscribed_before() -> None:
        async with rig.engine.begin() as conn:
            await _insert_subscription_as_before(conn, account, NFD + "/The\u0301")

    rig.run(subscribed_before())
    assert _lines(bob, "CREATE", _quoted(NFC)) == []
    assert _lines(bob, "SUBSCRIBE", _quoted(NFC)) == []
    watcher._raw_command_untagged(
        b"NOTIFY", [b"SET", b"(PERSONAL (MailboxName SubscriptionChange))"], uid=False
    )
    watcher.idle()

    # The NFD row is the NFC name to every session before the rename.
    assert _lines(modern, "LSUB", '""', "Caf*") == [
        b'() "/" "Caf\xc3\xa9"',
        b'() "/" "Caf\xc3\xa9/Gone"',
        b'() "/" "Caf\xc3\xa9/Th\xc3\xa9"',
    ]

    rows = _subscription_rows(rig, account.user.id)
    assert _lines(modern, "RENAME", _quoted(NFC), "Tea") == []
    heard = _heard(watcher, 6)
    watcher.idle_done()
    # RFC 5465 5.4 and 5.5: the renamed folders with OLDNAME and \Subscribed, the old
    # names gone (\NonExistent, no \Subscribed), the new names subscribed.
    assert sorted(heard, key=repr) == sorted(
        [
            (
                b"LIST",
                (b"\\HasChildren", b"\\Subscribed"),
                b"/",
                b"Tea",
                (b"OLDNAME", (b"Caf&AOk-",)),
            ),
            (
                b"LIST",
                (b"\\HasNoChildren", b"\\Subscribed"),
                b"/",
                b"Tea/Th&AOk-",
                (b"OLDNAME", (b"Caf&AOk-/Th&AOk-",)),
            ),
            (b"LIST", (b"\\NonExistent",), b"/", b"Caf&AOk-"),
            (b"LIST", (b"\\NonExistent",), b"/", b"Caf&AOk-/Th&AOk-"),
            (b"LIST", (b"\\Subscribed",), b"/", b"Tea"),
            (b"LIST", (b"\\Subscribed",), b"/", b"Tea/Th&AOk-"),
        ],
        key=repr,
    ), heard
    expected = ["Café/Gone", "Tea", "Tea/Thé"]  # the name that is no folder stays
    subscribed = [name for _f, _d, name in mac.list_sub_folders("", "*")]
    assert sorted(n for n in subscribed if n[:3] in ("Caf", "Tea")) == expected, subscribed
    assert _lines(modern, "LIST", "(SUBSCRIBED)", '""', "Caf*") == [
        b'(\\NonExistent \\Subscribed) "/" "Caf\xc3\xa9/Gone"'
    ]
    assert _lines(modern, "LSUB", '""', "Te*") == [b'() "/" "Tea/Th\xc3\xa9"', b'() "/" Tea']
    # One row per name: the old rows moved, none left behind.
    assert _subscription_rows(rig, account.user.id) == rows
    # Renamed back with the name in NFD: the subscriptions follow again.
    mac.rename_folder("Tea", NFD)
    subscribed = [name for _f, _d, name in mac.list_sub_folders("", "*")]
    assert sorted(n for n in subscribed if n[:3] in ("Caf", "Tea")) == [
        "Café",
        "Café/Gone",
        "Café/Thé",
    ], subscribed
    # Bob's subscription of "Café" is his own: untouched by Alice's renames.
    assert _lines(bob, "LSUB", '""', "Caf*") == [b'() "/" "Caf\xc3\xa9"']
    for imap in (modern, bob):
        imap.logout()
    for client in (mac, watcher):
        client.logout()
