"""IMAP4rev2 (RFC 9051) over a live server: ENABLE IMAP4rev2 switches one session to
rev2 answers (no RECENT or \\Recent, ESEARCH for SEARCH, a LIST in SELECT, UTF-8 names)
while a rev1 session of the same user beside it keeps the rev1 answers."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from cryptmail.imap.message import MessageAnalysis
from cryptmail.keys import unlock_account
from cryptmail.secret import Password
from cryptmail.store import get_mailbox, load_cache, load_messages, save_cache

from ...message.test_bodystructure import GLOBAL, INNER
from ...message.test_mime import fixed_analysis
from ...raw_client import RawClient
from ...server_rig import PASSWORD, USER, ImapRig, start_rig


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


def test_message_global_in_rev2_and_rev1_sessions(rig: ImapRig) -> None:
    """RFC 9051 treats message/global as message/rfc822 (envelope, structure, lines,
    sections inside); a rev1 session of the same user gets Dovecot 2.3's leaf. Another
    user's rev2 session beside them sees its own mail only."""
    rig.add_user("bob@example.org", "bob-password")
    rig.deliver(GLOBAL)
    rig.deliver(b"Subject: plain\r\n\r\nbody\r\n", email="bob@example.org")
    modern, legacy = _client(rig, True), _client(rig, False)
    bob = RawClient.connect(rig.port)
    bob.ask(b'LOGIN bob@example.org "bob-password"')
    bob.ask(b"ENABLE IMAP4rev2")
    for client in (modern, legacy, bob):
        client.ask(b"EXAMINE INBOX")
    fetch = b"FETCH 1 (BODYSTRUCTURE BODY BODY.PEEK[2.HEADER] BODY.PEEK[2.1])"
    untagged, done = legacy.ask(fetch)
    assert b" OK " in done
    answer = b"\r\n".join(untagged)
    assert b'("message" "global" NIL NIL NIL "8bit" 124 NIL NIL NIL NIL)' in answer
    assert b"BODY[2.HEADER] {0}" in answer  # a leaf has no header of its own
    assert b"BODY[2.1] {124}\r\n" + INNER[:-2] in answer
    untagged, done = modern.ask(fetch)
    assert b" OK " in done
    answer = b"\r\n".join(untagged)
    header = INNER[: INNER.index(b"\r\n\r\n") + 4]
    assert b'("message" "global" NIL NIL NIL "8bit" 124 (NIL {7}\r\ngr\xc3\xbc\xc3\x9fe' in answer
    assert b"BODY[2.HEADER] {%d}\r\n" % len(header) + header in answer
    assert b"BODY[2.1] {7}\r\nGr\xc3\xbc\xc3\x9fe" in answer
    untagged, _ = bob.ask(b"FETCH 1 (BODYSTRUCTURE)")
    assert b"global" not in b"".join(untagged)
    for client in (modern, legacy, bob):
        client.close()


def test_imapclient_reads_the_rev2_bodystructure_of_message_global(rig: ImapRig) -> None:
    """A real client's parser takes the rev2 form: message/global with its envelope."""
    rig.deliver(GLOBAL)
    client = IMAPClient("127.0.0.1", port=rig.port, ssl=False, timeout=30)
    client.login(USER, PASSWORD)
    assert client.enable("IMAP4rev2") == [b"IMAP4rev2"]
    client.select_folder("INBOX", readonly=True)
    structure = client.fetch([1], ["BODYSTRUCTURE"])[1][b"BODYSTRUCTURE"]
    part = structure[0][1]
    assert (part[0], part[1]) == (b"message", b"global")
    assert part[7][1] == "grüße".encode()  # the envelope's subject
    assert part[8][0:2] == (b"text", b"plain") and part[9] == 5
    client.logout()


def test_denormalised_names_are_stored_in_nfc_and_told_with_oldname(rig: ImapRig) -> None:
    """RFC 9051 5.1 and 6.3.4: a name given in another Unicode normal form is stored in
    NFC, the creating rev2 session is told so by a LIST with OLDNAME (as are SELECT
    6.3.2, DELETE 6.3.5 and RENAME 6.3.6 given such a name), and every command
    takes either form for the same folder (names are sealed: the uniqueness check
    compares the normalised forms' keyed lookups). A rev1 session (modified UTF-7) gets
    the same folder without the LIST; another user is not affected."""
    rig.add_user("bob@example.org", "bob-password")
    nfc, nfd = "Entwürfe".encode(), "Entwu\u0308rfe".encode()
    modern, legacy = _client(rig, True), _client(rig, False)
    untagged, done = modern.ask(b'CREATE "' + nfd + b'"')
    assert b" OK " in done, done
    assert untagged == [b'* LIST () "/" "' + nfc + b'" ("OLDNAME" ("' + nfd + b'"))'], untagged
    untagged, _ = modern.ask(b'LIST "" "Entw*"')
    assert untagged == [b'* LIST (\\HasNoChildren) "/" "' + nfc + b'"'], untagged
    for name in (nfc, nfd):
        _, done = modern.ask(b'CREATE "' + name + b'"')
        assert b" NO [ALREADYEXISTS]" in done, done
    # Either form selects it; its name in SELECT's LIST is the stored one, and the name
    # as supplied is its OLDNAME (RFC 9051 6.3.2: "MUST return LIST with the OLDNAME").
    untagged, done = modern.ask(b'SELECT "' + nfd + b'"')
    selected = b'* LIST () "/" "' + nfc + b'" ("OLDNAME" ("' + nfd + b'"))'
    assert b" OK " in done and selected in untagged, untagged
    modern.ask(b"UNSELECT")
    # rev1: the NFD form in modified UTF-7 is the same folder, and no OLDNAME is sent.
    _, done = legacy.ask(b'CREATE "Entwu&Awg-rfe"')
    assert b" NO [ALREADYEXISTS]" in done, done
    untagged, done = legacy.ask(b'STATUS "Entwu&Awg-rfe" (MESSAGES)')
    assert untagged == [b"* STATUS Entw&APw-rfe (MESSAGES 0)"], untagged
    untagged, done = legacy.ask(b'CREATE "Caf&AOk-/Ne&AwE-u"')  # "Café/Néu", its é as e + U+0301
    assert b" OK " in done and untagged == [], untagged
    untagged, _ = legacy.ask(b'LIST "" "Caf*"')
    assert b'* LIST (\\HasNoChildren) "/" Caf&AOk-/N&AOk-u' in untagged, untagged
    # RENAME to a denormalised name: stored in NFC, told with OLDNAME: RFC 9051 6.3.6,
    # "the OLDNAME value being the supplied existing mailbox name and the name
    # parameter being the normalized new mailbox name".
    target, target_nfd = "Ablage/Köln".encode(), "Ablage/Ko\u0308ln".encode()
    untagged, done = modern.ask(b'RENAME "' + nfd + b'" "' + target_nfd + b'"')
    assert b" OK " in done, done
    assert untagged == [b'* LIST () "/" "' + target + b'" ("OLDNAME" ("' + nfd + b'"))'], untagged
    untagged, _ = legacy.ask(b'LIST "" "Ablage/*"')
    assert untagged == [b'* LIST (\\HasNoChildren) "/" Ablage/K&APY-ln'], untagged
    # RFC 9051 6.3.5: DELETE of a denormalised name tells the normalised one \NonExistent.
    untagged, done = modern.ask(b'DELETE "' + target_nfd + b'"')
    assert b" OK " in done, done
    assert untagged == [
        b'* LIST (\\NonExistent) "/" "' + target + b'" ("OLDNAME" ("' + target_nfd + b'"))'
    ], untagged
    # Bob's folders are his own: the same name is free for him.
    bob = RawClient.connect(rig.port)
    bob.ask(b'LOGIN bob@example.org "bob-password"')
    bob.ask(b"ENABLE UTF8=ACCEPT")
    untagged, done = bob.ask(b'CREATE "' + nfd + b'"')
    assert b" OK " in done and b"OLDNAME" in untagged[0], untagged
    for client in (modern, legacy, bob):
        client.close()


def test_rev1_only_forms_are_refused_in_rev2_and_kept_in_rev1(rig: ImapRig) -> None:
    """RFC 9051 dropped \\Recent: no RECENT STATUS item (6.3.11, also in LIST-STATUS),
    no RECENT, NEW or OLD search keys (6.4.4, for SORT and THREAD too). A rev2 session
    asking for them gets BAD, a syntax error in rev2; the rev1 session of the same user
    beside it keeps them. What RFC 9051 only deprecates (LSUB, CHECK, the RFC822 FETCH
    items) still answers in rev2 as in rev1."""
    rig.deliver(b"Subject: one\r\n\r\nfirst\r\n")
    modern, legacy = _client(rig, True), _client(rig, False)
    for command in (
        b"STATUS INBOX (MESSAGES RECENT)",
        b'LIST "" "*" RETURN (STATUS (MESSAGES RECENT))',
    ):
        _, done = modern.ask(command)
        assert b" BAD " in done, (command, done)
        untagged, done = legacy.ask(command)
        assert b" OK " in done and any(b"RECENT " in line for line in untagged), untagged
    untagged, done = modern.ask(b"STATUS INBOX (MESSAGES UNSEEN)")
    assert b" OK " in done and untagged == [b"* STATUS INBOX (MESSAGES 1 UNSEEN 1)"]
    modern.ask(b"EXAMINE INBOX")
    legacy.ask(b"EXAMINE INBOX")
    for command in (
        b"SEARCH RECENT",
        b"SEARCH NEW",
        b"UID SEARCH NOT OLD",
        b"SEARCH OR SEEN (SUBJECT x NEW)",
        b"SORT (ARRIVAL) UTF-8 NEW",
        b"THREAD REFERENCES UTF-8 RECENT",
    ):
        _, done = modern.ask(command)
        assert b" BAD " in done, (command, done)
        _, done = legacy.ask(command)
        assert b" OK " in done, (command, done)
    untagged, done = modern.ask(b"SEARCH UNSEEN")
    assert b" OK " in done and untagged[0].endswith(b" ALL 1"), untagged
    # Deprecated, not removed: still answered in rev2.
    untagged, done = modern.ask(b'LSUB "" "*"')
    assert b" OK " in done and b'* LSUB () "/" INBOX' in untagged, untagged
    _, done = modern.ask(b"CHECK")
    assert b" OK " in done
    untagged, done = modern.ask(b"FETCH 1 (RFC822.SIZE RFC822.HEADER)")
    assert b" OK " in done and b"RFC822.HEADER {" in untagged[0], untagged
    modern.close()
    legacy.close()


def test_binary_of_message_global_follows_the_session_revision(rig: ImapRig) -> None:
    """BINARY (RFC 3516, core in RFC 9051) of a message/global part whose own text is
    base64: a rev1 session gets the part as the leaf Dovecot 2.3 sees (its stored
    bytes), a rev2 session the message inside with that text decoded, and BINARY[2.1]
    the decoded text itself."""
    inner = (
        b"Subject: inner\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode("Grüße".encode())
    )
    message = (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: message/global\r\n\r\n"
        + inner + b"\r\n--b--\r\n"
    )  # fmt: skip
    rig.deliver(message)
    modern, legacy = _client(rig, True), _client(rig, False)
    for client in (modern, legacy):
        client.ask(b"EXAMINE INBOX")
    untagged, done = legacy.ask(b"FETCH 1 (BINARY.PEEK[2] BINARY.PEEK[2.1])")
    assert b" OK " in done, done
    answer = b"\r\n".join(untagged)
    assert b"BINARY[2] {%d}\r\n" % len(inner) + inner in answer, answer
    assert b"BINARY[2.1] {%d}\r\n" % len(inner) + inner in answer, answer
    untagged, done = modern.ask(b"FETCH 1 (BINARY.PEEK[2] BINARY.PEEK[2.1])")
    assert b" OK " in done, done
    answer = b"\r\n".join(untagged)
    assert "BINARY[2.1] ~{7}\r\nGrüße".encode() in answer or (
        "BINARY[2.1] {7}\r\nGrüße".encode() in answer
    ), answer
    assert b"Content-Transfer-Encoding: binary\r\n\r\n" + "Grüße".encode() in answer, answer
    modern.close()
    legacy.close()


def _cache_versions(rig: ImapRig, rewrite_as: int | None = None) -> list[int]:
    """The analysis version of each INBOX message's cache; with ``rewrite_as`` first
    store each as that older version (as a cryptmail before message/global wrote it)."""

    async def work() -> list[int]:
        account, _slot = await unlock_account(
            rig.engine, USER, Password.from_str(PASSWORD), rig.config.crypto
        )
        async with rig.engine.connect() as conn:
            box = await get_mailbox(conn, account, "INBOX")
            rows = await load_messages(conn, account, box.id)
        versions = []
        for row in rows:
            async with rig.engine.begin() as conn:
                cache = await load_cache(conn, account, row.id)
                assert cache is not None and cache.extra
                if rewrite_as is not None:
                    analysis = MessageAnalysis.from_bytes(cache.extra)
                    old = fixed_analysis(analysis, rewrite_as)
                    await save_cache(conn, account, row, cache._replace(extra=old))
                    cache = cache._replace(extra=old)
                versions.append(cache.extra[4])
        return versions

    return rig.run(work())


def test_an_older_cache_of_message_global_is_analysed_again(rig: ImapRig) -> None:
    """A cache written before message/global was read as a message is not trusted for
    it: the next FETCH analyses the message again and stores the current version; an
    older cache of a message without message/global is kept as it is."""
    rig.deliver(GLOBAL)
    rig.deliver(b"Subject: plain\r\n\r\nbody\r\n")
    legacy = _client(rig, False)
    legacy.ask(b"EXAMINE INBOX")
    legacy.ask(b"FETCH 1:2 (BODYSTRUCTURE)")
    assert _cache_versions(rig) == [5, 5]
    assert _cache_versions(rig, rewrite_as=4) == [4, 4]
    modern = _client(rig, True)
    modern.ask(b"EXAMINE INBOX")
    untagged, done = modern.ask(b"FETCH 1:2 (BODYSTRUCTURE)")
    assert b" OK " in done
    assert b'("message" "global" NIL NIL NIL "8bit" 124 (NIL {7}' in untagged[0], untagged
    assert _cache_versions(rig) == [5, 4]
    for client in (modern, legacy):
        client.close()
