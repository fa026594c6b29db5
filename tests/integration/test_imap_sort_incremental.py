# mypy: disable-error-code="index, operator, arg-type, union-attr, misc"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""SORT and THREAD stay exactly right while the mailbox changes under them (issue 16:
the orders kept per mailbox are updated in place, the answers kept per view): a real
`cryptmail serve`, mail arriving over LMTP the whole time, one session expunging, two
sessions of the same user (one client address) sorting. Every answer is compared, in
order, with a sort from scratch of the same messages: their headers fetched right after
and run through the reference `sort_messages` / `thread_references`. Then, quiet, the
whole mailbox once more, and a second user's mailbox that never changed."""

from __future__ import annotations

import imaplib
import random
import re
import smtplib
import threading
from collections.abc import Iterator

import pytest

from cryptmail.imap.message._sort import SortItem, sort_messages
from cryptmail.imap.message._sortkeys import header_sort_fields, sort_keys
from cryptmail.imap.message._thread import ThreadItem, thread_references

from .cryptmail_server import PASSWORD, CryptmailServer, make_users

pytestmark = pytest.mark.integration

ALICE, BOB = "alice@example.org", "bob@example.org"
SORTS: list[list[tuple[str, bool]]] = [
    [("SUBJECT", False)], [("FROM", False)], [("DATE", False)], [("SUBJECT", True)],
    [("SIZE", False)], [("DISPLAYFROM", False)], [("TO", True)], [("CC", False)],
    [("SUBJECT", False), ("DATE", True)],
]  # fmt: skip
ROUNDS = 25


def _message(index: int) -> bytes:
    rng = random.Random(index)
    topic = rng.randrange(12)
    subject = rng.choice(["", "Re: ", "Fwd: ", "[list] Re: "]) + f"topic {topic}"
    if rng.random() < 0.2:
        subject = "=?utf-8?q?r=C3=A9sum=C3=A9_" + str(topic) + "?="
    sender = rng.randrange(6)
    refs = ""
    if index > 3 and rng.random() < 0.6:
        refs = f"References: <m{rng.randrange(index)}@example.org>\r\n"
    return (
        f"From: Sender {sender} <s{sender}@example.net>\r\nTo: u{rng.randrange(3)}@x\r\n"
        f"Subject: {subject}\r\nDate: {1 + rng.randrange(3)} Jan 2024 10:00:00 +0000\r\n"
        f"Message-ID: <m{index}@example.org>\r\n{refs}\r\n" + "body\r\n" * (1 + index % 4)
    ).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CryptmailServer]:
    data_dir = tmp_path_factory.mktemp("sortinc") / "data"
    make_users(data_dir, "example.org", {ALICE: 2, BOB: 0})
    with CryptmailServer(data_dir, imap=True) as serve:
        yield serve


def _login(server: CryptmailServer, user: str) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
    imap.login(user, PASSWORD)
    imap.select("INBOX")
    return imap


def _criteria(sort: list[tuple[str, bool]]) -> str:
    return "(" + " ".join(("REVERSE " if rev else "") + name for name, rev in sort) + ")"


def _fetch(imap: imaplib.IMAP4, uids: list[int]) -> dict[int, tuple[int, bytes]]:
    """UID to (RFC822.SIZE, header) of those of ``uids`` still there."""
    if not uids:
        return {}
    typ, data = imap.uid("FETCH", ",".join(map(str, uids)), "(RFC822.SIZE BODY.PEEK[HEADER])")
    if typ == "NO":  # some expunged meanwhile (RFC 2180 4.1.3): the others are still sent
        assert b"EXPUNGEISSUED" in data[0], data
        data = imap.untagged_responses.pop("FETCH", [])
    else:
        assert typ == "OK", data
    out: dict[int, tuple[int, bytes]] = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            size = int(re.search(rb"RFC822\.SIZE (\d+)", item[0]).group(1))
            out[uid] = (size, item[1])
    return out


def _sorted_from_scratch(
    fetched: dict[int, tuple[int, bytes]], sort: list[tuple[str, bool]]
) -> list[int]:
    items = [
        SortItem(uid, uid, 0.0, sort_keys(header_sort_fields(header))._replace(size=size))
        for uid, (size, header) in fetched.items()
    ]
    return [item.number for item in sort_messages(items, sort)]


def _thread_from_scratch(fetched: dict[int, tuple[int, bytes]]) -> bytes:
    items = []
    for uid, (_size, header) in fetched.items():
        keys = sort_keys(header_sort_fields(header))
        assert keys.date is not None  # every test message has a Date:
        items.append(
            ThreadItem(uid, uid, keys.date, keys.subject, keys.reply, keys.message_id,
                       keys.references)
        )  # fmt: skip
    return thread_references(items)


def _uid_sort(imap: imaplib.IMAP4, sort: list[tuple[str, bool]]) -> list[int]:
    typ, data = imap.uid("SORT", _criteria(sort), "UTF-8", "ALL")
    assert typ == "OK", data
    return [int(n) for n in data[0].split()]


def _uid_thread(imap: imaplib.IMAP4) -> tuple[bytes, set[int]]:
    typ, data = imap.uid("THREAD", "REFERENCES", "UTF-8", "ALL")
    assert typ == "OK", data
    body = data[0] or b""
    return body, {int(n) for n in re.findall(rb"\d+", body)}


def test_sort_stays_exact_while_mail_arrives_and_goes(server: CryptmailServer) -> None:
    stop = threading.Event()
    errors: list[str] = []
    counts = {"delivered": 0, "expunged": 0, "checked": 0, "threads": 0}
    lock = threading.Lock()

    def deliverer() -> None:
        with smtplib.LMTP("127.0.0.1", server.port, timeout=60) as lmtp:
            index = 0
            while not stop.is_set() and index < 400:
                lmtp.sendmail("sender@example.net", [ALICE], _message(index))
                index += 1
                with lock:
                    counts["delivered"] = index

    def expunger() -> None:
        imap = _login(server, ALICE)
        rng = random.Random(7)
        while not stop.is_set():
            typ, data = imap.uid("SEARCH", None, "ALL")
            uids = data[0].split()
            if len(uids) > 20:
                doomed = rng.sample(uids, 3)
                imap.uid("STORE", b",".join(doomed), "+FLAGS.SILENT", "(\\Deleted)")
                imap.expunge()
                with lock:
                    counts["expunged"] += 3
            stop.wait(0.2)
        imap.logout()

    def sorter(number: int) -> None:
        imap = _login(server, ALICE)
        for round_ in range(ROUNDS):
            imap.noop()
            sort = SORTS[(round_ + number) % len(SORTS)]
            answer = _uid_sort(imap, sort)
            if len(set(answer)) != len(answer):
                errors.append(f"session {number}: SORT {sort} lists a message twice")
            fetched = _fetch(imap, answer)
            # The order of the messages still there is the order from scratch (an
            # expunge between the SORT and the FETCH only shortens both).
            kept = [uid for uid in answer if uid in fetched]
            expected = _sorted_from_scratch(fetched, sort)
            if kept != expected:
                errors.append(f"session {number}: SORT {sort}: {kept} != {expected}")
            # THREAD, then the header of every message it lists: compared when nothing
            # was delivered or expunged between the two (a few tries: under load the
            # deliverer and the expunger overlap most single tries).
            for _try in range(5):
                body, listed = _uid_thread(imap)
                threaded = _fetch(imap, sorted(listed)) if listed else {}
                if set(threaded) == listed:
                    if body != _thread_from_scratch(threaded):
                        errors.append(f"session {number}: THREAD differs from scratch")
                    with lock:
                        counts["threads"] += 1
                    break
            with lock:
                counts["checked"] += 1
        imap.logout()

    workers = [threading.Thread(target=deliverer), threading.Thread(target=expunger)]
    sorters = [threading.Thread(target=sorter, args=(n,)) for n in range(2)]
    for worker in workers + sorters:
        worker.start()
    for worker in sorters:
        worker.join(timeout=600)
    stop.set()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors, errors[:5]
    assert counts["checked"] == 2 * ROUNDS
    assert counts["expunged"] > 0 and counts["delivered"] > 20, counts
    assert counts["threads"] > 0, counts

    # Quiet: every criterion, REVERSE or not, over the whole mailbox, in a new session
    # and again in the same one (the second answer is the kept one).
    imap = _login(server, ALICE)
    typ, data = imap.uid("SEARCH", None, "ALL")
    fetched = _fetch(imap, [int(n) for n in data[0].split()])
    names = ["ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM",
             "DISPLAYTO"]  # fmt: skip
    for name in names:
        for sort in ([(name, False)], [(name, True)]):
            if name == "ARRIVAL":  # internal dates to the second: only the set
                assert sorted(_uid_sort(imap, sort)) == sorted(fetched)
                continue
            expected = _sorted_from_scratch(fetched, sort)
            assert _uid_sort(imap, sort) == expected, sort
            assert _uid_sort(imap, sort) == expected, sort
    assert _uid_thread(imap)[0] == _thread_from_scratch(fetched)
    imap.logout()


def test_two_users_sort_their_own_mailboxes(server: CryptmailServer) -> None:
    """Bob's mailbox (crypt 0, in the same server as Alice's), sorted from two sessions:
    each answer is his messages' order from scratch."""
    with smtplib.LMTP("127.0.0.1", server.port, timeout=60) as lmtp:
        for index in range(1000, 1030):
            lmtp.sendmail("sender@example.net", [BOB], _message(index))
    sessions = [_login(server, BOB), _login(server, BOB)]
    typ, data = sessions[0].uid("SEARCH", None, "ALL")
    fetched = _fetch(sessions[0], [int(n) for n in data[0].split()])
    assert len(fetched) == 30
    for sort in SORTS:
        expected = _sorted_from_scratch(fetched, sort)
        for imap in sessions:
            assert _uid_sort(imap, sort) == expected, sort
    for imap in sessions:
        imap.logout()
