"""SORT, THREAD and ESORT against Dovecot 2.3 as the oracle.

The same mailbox (a corpus made for sorting and threading, plus the MIME corpus) is
APPENDed to a private Dovecot and to our live listener with the same internal dates;
then every sort criterion (alone, REVERSEd, combined, with search programs, UID SORT,
ESORT RETURN options) and both thread algorithms must give the same answer. The
corpus covers RFC 5256's base-subject rules (Re:, Fwd:, [blob], "(fwd)", "[fwd: ...]",
encoded words, non-ASCII case), address forms, missing and odd dates, equal keys
(mailbox order must decide), and threads joined by References, In-Reply-To, missing
parents, loops and duplicate Message-IDs.

A second test runs several sessions sorting while another delivers and expunges.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import imapclient
import pytest

from imap.mime_corpus import generate_corpus
from imap.server_rig import PASSWORD as RIG_PASSWORD
from imap.server_rig import USER as RIG_USER
from imap.server_rig import ImapRig, start_rig

from .servers.dovecot import Dovecot, DovecotUser, dovecot_instances
from .test_imap_sessions_vs_dovecot import Differences, Endpoint, Literal, _login

pytestmark = pytest.mark.integration

USER = "sorter"
PASSWORD = "sorter-pw"

SUBJECTS = [
    "Meeting notes", "Re: Meeting notes", "RE: meeting NOTES", "Fwd: Meeting notes",
    "Re: Re: Fw: meeting notes", "[list] Re: Meeting notes", "Re: [list] Meeting notes",
    "Meeting notes (fwd)", "[Fwd: Meeting notes]", "[fwd: Re: Meeting notes] (fwd)",
    "[list]", "[a][b] Re[c]: x", "Re:", "  spaced   out\tsubject  ", "",
    "=?utf-8?q?R=C3=A9sum=C3=A9?=", "Re: =?utf-8?b?UsOpc3Vtw6k=?=", "résumé",
    "=?iso-8859-1?q?=C9t=E9?=", "été", "Straße", "STRASSE", "Ärger", "ärger",
    "=?utf-8?q?=E6=97=A5=E6=9C=AC?=", "zebra", "Apple", "apple", "Re: zebra",
    "Fwd: [list] Re: zebra", "Re: [fwd: zebra]", "ﬁle", "FILE",
]  # fmt: skip
FROMS = [
    "Alice <alice@example.org>", "bob@example.org", '"Zed, Z." <zed@example.net>',
    "=?utf-8?q?=C3=89mile?= <emile@example.fr>", "carol@EXAMPLE.org (Carol)",
    "undisclosed-recipients:;", "Group: dave@example.org, erin@example.org;",
    "<>", "Mallory", "\"\" <quiet@example.org>", "ALICE <Alice@example.org>",
]  # fmt: skip
DATES = [
    "Mon, 1 Jan 2024 10:00:00 +0000", "Mon, 1 Jan 2024 12:00:00 +0200",
    "1 Jan 2024 09:30:00 -0100", "Sun, 31 Dec 2023 23:59:59 +0000", "garbage",
    None, "Tue, 2 Jan 2024 10:00:00 EST", "Wed, 3 Jan 2024 10:00:00 +0000",
]  # fmt: skip
INTERNAL = ["01-Jan-2024 10:00:00 +0000", "02-Jan-2024 00:00:00 +0000",
            "01-Jan-2024 10:00:00 +0000", "31-Dec-2023 08:00:00 -0500"]  # fmt: skip


def sort_corpus() -> list[bytes]:
    messages = []
    for index in range(90):
        lines = [f"Subject: {SUBJECTS[index % len(SUBJECTS)]}"]
        lines.append(f"From: {FROMS[index % len(FROMS)]}")
        if index % 3:
            lines.append(f"To: {FROMS[(index * 7) % len(FROMS)]}")
        if index % 4 == 1:
            lines.append(f"Cc: {FROMS[(index * 5) % len(FROMS)]}, x@example.com")
        date = DATES[index % len(DATES)]
        if date is not None:
            lines.append(f"Date: {date}")
        # Threads: message n replies to n - 3 or n - 7; some with only In-Reply-To, some
        # to a message that is not here, a few with duplicate or missing Message-IDs.
        if index % 11 != 5:
            lines.append(f"Message-ID: <m{index if index % 17 else 3}@example.org>")
        if index >= 3 and index % 5 == 0:
            lines.append(f"References: <m{index - 3}@example.org> <m{index - 1}@example.org>")
        elif index >= 7 and index % 5 == 1:
            lines.append(f"In-Reply-To: <m{index - 7}@example.org> (sent earlier)")
        elif index % 5 == 2:
            lines.append(f"References: <gone{index}@example.org>\r\n <m{index + 1}@example.org>")
        elif index % 13 == 3:
            lines.append(f"References: <m{index + 2}@example.org> <m{index}@example.org>")
        lines.append("")
        lines.append("body " * (index % 9))
        messages.append("\r\n".join(lines).encode() + b"\r\n")
    return messages


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with dovecot_instances() as factory:
        yield factory(users=[DovecotUser(USER, PASSWORD)], imap=True)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path_factory.mktemp("sort"))


@pytest.fixture(scope="module")
def endpoints(dovecot: Dovecot, rig: ImapRig) -> Iterator[tuple[Endpoint, Endpoint]]:
    assert dovecot.imap_port is not None
    theirs = Endpoint("dovecot", _login(dovecot.host, dovecot.imap_port, USER, PASSWORD))
    ours = Endpoint("cryptmail", _login("127.0.0.1", rig.port, RIG_USER, RIG_PASSWORD))
    corpus = sort_corpus() + generate_corpus(7, 30)
    for endpoint in (theirs, ours):
        for index, message in enumerate(corpus):
            date = INTERNAL[index % len(INTERNAL)].encode()
            data = re.sub(rb"\r?\n", b"\r\n", message)
            flags = b"\\Seen" if index % 2 else b""
            response = endpoint.command(b'APPEND INBOX (%s) "%s" ' % (flags, date), Literal(data))
            assert b" OK " in response[-1], (endpoint.name, index, response)
        endpoint.command(b"SELECT INBOX")
    yield theirs, ours
    for endpoint in (theirs, ours):
        endpoint.client.logout()


CRITERIA = [b"ARRIVAL", b"DATE", b"SUBJECT", b"FROM", b"TO", b"CC", b"SIZE", b"DISPLAYFROM",
            b"DISPLAYTO"]  # fmt: skip
COMMANDS: list[tuple[bytes | Literal, ...]] = [
    *[(b"SORT (%s) UTF-8 ALL" % c,) for c in CRITERIA],
    *[(b"SORT (REVERSE %s) UTF-8 ALL" % c,) for c in CRITERIA],
    (b"SORT (SUBJECT DATE) UTF-8 ALL",), (b"SORT (FROM REVERSE DATE) US-ASCII ALL",),
    (b"SORT (REVERSE SUBJECT REVERSE ARRIVAL) UTF-8 ALL",), (b"SORT (CC TO SIZE) UTF-8 ALL",),
    (b"SORT (DATE) UTF-8 SEEN",), (b"SORT (SUBJECT) UTF-8 UNSEEN 5:60",),
    (b"SORT (DATE) UTF-8 SUBJECT meeting",), (b"SORT (ARRIVAL) UTF-8 NOT ALL",),
    (b"SORT (SUBJECT) UTF-8 SUBJECT ", Literal("résumé".encode())),
    (b"UID SORT (DATE) UTF-8 ALL",), (b"UID SORT (REVERSE FROM) UTF-8 UID 10:40",),
    (b"SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL",), (b"SORT RETURN () (SUBJECT) UTF-8 ALL",),
    (b"SORT RETURN (COUNT) (SUBJECT) UTF-8 NOT ALL",),
    (b"UID SORT RETURN (ALL) (SIZE) UTF-8 SEEN",),
    (b"THREAD ORDEREDSUBJECT UTF-8 ALL",), (b"THREAD REFERENCES UTF-8 ALL",),
    (b"THREAD REFERENCES US-ASCII SEEN",), (b"UID THREAD REFERENCES UTF-8 ALL",),
    (b"UID THREAD ORDEREDSUBJECT UTF-8 1:40",), (b"THREAD REFERENCES UTF-8 NOT ALL",),
    (b"SORT (DATE) ISO-8859-1 ALL",), (b"SORT (FOO) UTF-8 ALL",), (b"SORT DATE UTF-8 ALL",),
    (b"THREAD NOSUCH UTF-8 ALL",), (b"SORT (DATE) UTF-8 999:1000",),
    (b"SEARCH RETURN (MIN MAX COUNT ALL) SEEN",), (b"UID SEARCH RETURN () UNSEEN",),
    (b"SEARCH RETURN (COUNT) YOUNGER 1",), (b"SEARCH OLDER 1",),
]  # fmt: skip
KNOWN_DIFFERENCES = {
    "SORT (DATE) ISO-8859-1 ALL": "we list the charsets in [BADCHARSET (...)], Dovecot "
    "converts ISO-8859-1; RFC 5256 requires only US-ASCII and UTF-8",
    "THREAD REFERENCES UTF-8 NOT ALL": "no thread: we send '* THREAD' as RFC 5256's "
    "grammar has it, Dovecot adds a trailing space",
}


def test_sort_and_thread_match_dovecot(endpoints: tuple[Endpoint, Endpoint]) -> None:
    theirs, ours = endpoints
    diffs = Differences([])
    for command in COMMANDS:
        diffs.compare(theirs, ours, *command)
    found = {command.decode(errors="replace") for command, _e, _g in diffs.found}
    unexpected = found - set(KNOWN_DIFFERENCES)
    assert not unexpected, diffs.report()
    assert found == set(KNOWN_DIFFERENCES), "a known difference is gone: update the list"


def _flatten(threads: object) -> list[int]:
    out: list[int] = []
    stack = [threads]
    while stack:
        item = stack.pop()
        if isinstance(item, int):
            out.append(item)
        else:
            stack.extend(item)  # type: ignore[arg-type]  # imapclient's nested tuples
    return out


def test_sessions_sort_while_mail_arrives_and_goes(rig: ImapRig) -> None:
    """Four sessions SORT and THREAD (by UID) while a fifth appends and expunges: each
    answer lists every message, once, that the session's UID SEARCH just before showed
    (unless the writer expunged it meanwhile), and nothing that was never appended."""
    stop = threading.Event()
    appended: set[int] = set()
    expunged: set[int] = set()
    lock = threading.Lock()
    errors: list[str] = []
    ready = threading.Event()

    def writer() -> None:
        client = imapclient.IMAPClient("127.0.0.1", port=rig.port, ssl=False)
        client.login(RIG_USER, RIG_PASSWORD)
        client.create_folder("Busy")
        client.select_folder("Busy")
        corpus = sort_corpus()
        index = 0
        while not stop.is_set():
            for message in corpus[index % 85 : index % 85 + 5]:
                # Under the lock: a reader may see the message as soon as it is committed,
                # before this thread has its answer; its look at ``appended`` then waits.
                with lock:
                    answer = client.append("Busy", message)
                    appended.add(int(answer.split(b"]")[0].split()[-1]))
            uids = client.search(["ALL"])
            if len(uids) > 30:
                with lock:
                    expunged.update(uids[:4])
                client.delete_messages(uids[:4])
                client.expunge()
            index += 5
            ready.set()
        client.logout()

    def reader(number: int) -> None:
        client = imapclient.IMAPClient("127.0.0.1", port=rig.port, ssl=False)
        client.login(RIG_USER, RIG_PASSWORD)
        ready.wait(60)
        client.select_folder("Busy")
        for round_ in range(20):
            client.noop()
            before = set(client.search(["ALL"]))
            criterion = ["DATE", "SUBJECT", "FROM", "ARRIVAL", "SIZE"][(round_ + number) % 5]
            sorted_uids = client.sort([criterion])
            threaded = _flatten(client.thread("REFERENCES" if round_ % 2 else "ORDEREDSUBJECT"))
            with lock:
                known, gone = set(appended), set(expunged)
            for name, answer in (("SORT", sorted_uids), ("THREAD", threaded)):
                if len(set(answer)) != len(answer):
                    errors.append(f"session {number}: {name} lists a message twice")
                if not set(answer) <= known:
                    errors.append(f"session {number}: {name} lists a UID never appended")
                if not before - gone <= set(answer):
                    errors.append(f"session {number}: {name} left out a message")
        client.logout()

    writer_thread = threading.Thread(target=writer)
    writer_thread.start()
    readers = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.join(timeout=300)
    stop.set()
    writer_thread.join(timeout=60)
    assert not errors, errors[:10]
    assert expunged, "the writer never expunged: the test did not test that"
    # A quiet look at the end: SORT, THREAD and SEARCH agree on the set.
    client = imapclient.IMAPClient("127.0.0.1", port=rig.port, ssl=False)
    client.login(RIG_USER, RIG_PASSWORD)
    client.select_folder("Busy")
    everything = sorted(client.search(["ALL"]))
    assert sorted(client.sort(["SUBJECT"])) == everything
    assert sorted(client.sort(["REVERSE", "DATE"])) == everything
    assert sorted(_flatten(client.thread("REFERENCES"))) == everything
    client.logout()
