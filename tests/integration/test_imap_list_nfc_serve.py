# mypy: disable-error-code="index, union-attr, arg-type, attr-defined"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""Folder names in Unicode NFC (RFC 9051 5.1) through a real `cryptmail serve` (issue
16): imapclient, an IMAP4rev1 client that sends names in modified UTF-7, gives them in
NFD (as macOS hands text over); an IMAP4rev2 session of the same user from the same
address, with UTF-8 names, sees one NFC folder and one NFC subscription, its LIST and
LSUB patterns in NFD match them (LIST-EXTENDED selection and return options too), and
is told of normalised names with OLDNAME; a RENAME carries the subscription. Another
user sees none of it."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator

import imapclient
import pytest

from .cryptmail_server import PASSWORD, CryptmailServer, make_users

pytestmark = pytest.mark.integration

ALICE, BOB = "alice@example.org", "bob@example.org"
NFC, NFD = "Café/Thé", "Cafe\u0301/The\u0301"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CryptmailServer]:
    data_dir = tmp_path_factory.mktemp("nfc") / "data"
    make_users(data_dir, "example.org", {ALICE: 2, BOB: 2})
    with CryptmailServer(data_dir, imap=True) as serve:
        yield serve


def _rev2(server: CryptmailServer, user: str) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
    imap.login(user, PASSWORD)
    assert imap._simple_command("ENABLE", "IMAP4rev2")[0] == "OK"
    imap._encoding = "utf-8"  # names go out as UTF-8 quoted strings from now on
    return imap


def _ask(imap: imaplib.IMAP4, *args: str) -> list[bytes]:
    """One command, its LIST, LSUB and STATUS lines."""
    typ, data = imap._simple_command(*args)
    assert typ == "OK", (args, data)
    lines: list[bytes] = []
    for name in ("LIST", "LSUB", "STATUS"):
        lines += [d for d in imap.untagged_responses.pop(name, []) if isinstance(d, bytes)]
    return lines


def _q(name: str) -> str:
    return '"' + name + '"'


def test_nfd_names_from_imapclient_are_one_nfc_folder_for_every_session(
    server: CryptmailServer,
) -> None:
    client = imapclient.IMAPClient("127.0.0.1", port=server.imap_port, ssl=False)
    client.login(ALICE, PASSWORD)
    modern = _rev2(server, ALICE)
    bob = _rev2(server, BOB)

    client.create_folder(NFD)  # modified UTF-7 of the NFD form: "Cafe&AwE-/The&AwE-"
    client.subscribe_folder(NFD)
    client.subscribe_folder(NFC)  # the same name: one subscription
    # imapclient decodes what it gets: the NFC names, whichever form the pattern has.
    for pattern in ("Cafe\u0301*", "Café*"):
        names = [name for _flags, _delimiter, name in client.list_folders("", pattern)]
        assert names == ["Café", NFC], names
        subscribed = [name for _f, _d, name in client.list_sub_folders("", pattern)]
        assert subscribed == [NFC], subscribed

    nfc_line = '(\\HasNoChildren) "/" "Café/Thé"'.encode()
    assert _ask(modern, "LIST", '""', _q("Cafe\u0301/%")) == [nfc_line]
    assert _ask(modern, "LSUB", '""', _q("Cafe\u0301*")) == ['() "/" "Café/Thé"'.encode()]
    assert _ask(modern, "LIST", "(SUBSCRIBED)", '""', _q("Cafe\u0301/*")) == [
        '(\\HasNoChildren \\Subscribed) "/" "Café/Thé"'.encode()
    ]
    assert _ask(modern, "LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', _q("Cafe\u0301")) == [
        '(\\HasChildren) "/" "Café" ("CHILDINFO" ("SUBSCRIBED"))'.encode()
    ]
    listed = _ask(modern, "LIST", '""', _q("Cafe\u0301/*"), "RETURN", "(STATUS (MESSAGES))")
    assert listed == [nfc_line, '"Café/Thé" (MESSAGES 0)'.encode()], listed
    # RENAME with the existing name in NFD: RFC 9051 6.3.6's OLDNAME, the name supplied.
    told = _ask(modern, "RENAME", _q(NFD), _q("Tea"))
    assert told == ['() "/" Tea ("OLDNAME" ("Cafe\u0301/The\u0301"))'.encode()], told
    # The subscription moves with the folder (Dovecot 2.3 leaves it with the old name).
    subscribed = [name for _f, _d, name in client.list_sub_folders("", "*")]
    assert subscribed.count("Tea") == 1 and NFC not in subscribed, subscribed
    client.rename_folder("Tea", NFD)  # back, the new name in NFD
    subscribed = [name for _f, _d, name in client.list_sub_folders("", "*")]
    assert subscribed.count(NFC) == 1 and "Tea" not in subscribed, subscribed
    client.unsubscribe_folder(NFD)
    assert NFC not in [name for _f, _d, name in client.list_sub_folders("", "*")]
    # Bob's folders and subscriptions are his own.
    assert _ask(bob, "LIST", '""', "*").count(nfc_line) == 0
    assert _ask(bob, "LSUB", '""', _q("Caf*")) == []
    for imap in (modern, bob):
        imap.logout()
    client.logout()
