# mypy: disable-error-code="index, operator, arg-type, assignment, union-attr"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""SORT and THREAD on the live server: keys from the sealed cache (never-read messages
indexed, caches written before the sort fields filled in and stored again), bad input,
an unreadable message, several users at once."""

from __future__ import annotations

import imaplib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cryptmail.db import tables as t
from cryptmail.imap.message._analysis import MessageAnalysis
from cryptmail.keys import unlock_account
from cryptmail.secret import Password
from cryptmail.store import BlobId, get_mailbox, load_cache, load_messages, save_cache

from ...server_rig import PASSWORD, USER, ImapRig, start_rig

SUBJECTS = [b"Re: banana", b"apple", b"[list] cherry", b"Fwd: apple", b"=?utf-8?q?=C3=A9clair?="]
SENDERS = [b"zoe@example.org", b"Adam <adam@example.org>", b"mia@example.org", b"bo@x", b"eve@x"]


def _message(index: int) -> bytes:
    return (
        b"Subject: %s\r\nFrom: %s\r\nDate: Mon, %d Jan 2024 10:00:00 +0000\r\n"
        b"Message-ID: <m%d@example.org>\r\n%s\r\nbody %s\r\n"
        % (
            SUBJECTS[index % 5], SENDERS[index % 5], 20 - index, index,
            b"References: <m%d@example.org>\r\n" % (index - 2) if index >= 2 else b"",
            b"x" * index,
        )
    )  # fmt: skip


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _login(rig: ImapRig, user: str = USER, password: str = PASSWORD) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(user, password)
    return imap


def _sort(imap: imaplib.IMAP4, *args: str) -> list[int]:
    typ, data = imap.sort(*args)
    assert typ == "OK", data
    return [int(n) for n in data[0].split()]


EXPECTED = {
    # Messages 1-10 (index 0-9): dates fall, subjects and senders cycle by five.
    "DATE": [10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
    "ARRIVAL": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    "SUBJECT": [2, 4, 7, 9, 1, 6, 3, 8, 5, 10],  # apple, banana, cherry, éclair
    "FROM": [2, 7, 4, 9, 5, 10, 3, 8, 1, 6],  # adam, bo, eve, mia, zoe
}


def _status(imap: imaplib.IMAP4, verb: str, *args: str) -> str:
    try:
        typ, _data = imap._simple_command(verb, *args)
    except imaplib.IMAP4.error as exc:  # imaplib raises on BAD
        assert "command error: BAD" in str(exc), exc
        return "BAD"
    return str(typ)


def _deliver(rig: ImapRig, count: int = 10) -> None:
    for index in range(count):
        rig.deliver(_message(index))


def _rewrite_caches_as_version_2(rig: ImapRig) -> int:
    """Store every message's cache as a cryptmail without sort fields wrote it."""

    async def work() -> int:
        account, _slot = await unlock_account(
            rig.engine, USER, Password.from_str(PASSWORD), rig.config.crypto
        )
        async with rig.engine.connect() as conn:
            box = await get_mailbox(conn, account, "INBOX")
            rows = await load_messages(conn, account, box.id)
        done = 0
        for row in rows:
            async with rig.engine.begin() as conn:
                cache = await load_cache(conn, account, row.id)
                if cache is None or not cache.extra:
                    continue  # never read
                analysis = MessageAnalysis.from_bytes(cache.extra)
                assert analysis.sort_fields is not None
                old = cache._replace(extra=analysis._replace(sort_fields=None).to_bytes())
                await save_cache(conn, account, row, old)
                done += 1
        return done

    return rig.run(work())


def _sort_fields_present(rig: ImapRig) -> list[bool | None]:
    """Per message: whether its cache has the sort fields (None: it has no cache)."""

    async def work() -> list[bool | None]:
        account, _slot = await unlock_account(
            rig.engine, USER, Password.from_str(PASSWORD), rig.config.crypto
        )
        async with rig.engine.connect() as conn:
            box = await get_mailbox(conn, account, "INBOX")
            rows = await load_messages(conn, account, box.id)
            out: list[bool | None] = []
            for row in rows:
                cache = await load_cache(conn, account, row.id)
                if cache is None or not cache.extra:
                    out.append(None)
                else:
                    out.append(MessageAnalysis.from_bytes(cache.extra).sort_fields is not None)
        return out

    return rig.run(work())


def test_sort_never_read_messages_and_old_caches(rig: ImapRig) -> None:
    _deliver(rig)
    imap = _login(rig)
    imap.select("INBOX")
    typ, _data = imap.fetch("1:3", "(ENVELOPE)")  # indexes some (FETCH reads ahead)
    assert typ == "OK"
    imap.logout()
    # Those caches as a cryptmail without sort fields wrote them.
    rewritten = _rewrite_caches_as_version_2(rig)
    present = _sort_fields_present(rig)
    assert rewritten >= 3 and present.count(False) == rewritten and None in present
    imap = _login(rig)
    imap.select("INBOX")
    for criterion, expected in EXPECTED.items():  # the first SORT reads or indexes all
        assert _sort(imap, f"({criterion})", "UTF-8", "ALL") == expected, criterion
    assert _sort_fields_present(rig) == [True] * 10  # headers read, caches stored again
    # Equal senders keep mailbox order under REVERSE too.
    assert _sort(imap, "(REVERSE FROM)", "UTF-8", "ALL") == [1, 6, 3, 8, 5, 10, 4, 9, 2, 7]
    typ, data = imap.fetch("1", "(ENVELOPE)")  # and the rest of the cache still serves
    assert typ == "OK" and b'"Re: banana"' in data[0]
    typ, data = imap.uid("SORT", "(SUBJECT)", "UTF-8", "UID", "3:6")
    assert typ == "OK" and data == [b"4 6 3 5"]
    typ, data = imap.uid("THREAD", "REFERENCES", "UTF-8", "ALL")
    assert typ == "OK" and data == [b"(2 4 6 8 10)(1 3 5 7 9)"]  # by the roots' dates
    imap.logout()
    # A new session sorts from the keys this process keeps (no cache read): the same.
    imap = _login(rig)
    imap.select("INBOX")
    assert _sort(imap, "(SUBJECT)", "UTF-8", "ALL") == EXPECTED["SUBJECT"]
    imap.logout()


def test_bad_input_is_answered_and_changes_nothing(rig: ImapRig) -> None:
    _deliver(rig, 3)
    imap = _login(rig)
    imap.send(b"x1 SORT (DATE) UTF-8 ALL\r\n")  # imaplib itself refuses it unselected
    assert imap.readline().startswith(b"x1 BAD")
    imap.select("INBOX")
    for args, status in [
        (("(DATE)", "ISO-8859-1", "ALL"), "NO"),
        (("(DATE)", "X-UNKNOWN", "ALL"), "NO"),
        (("(FOO)", "UTF-8", "ALL"), "BAD"),
        (("()", "UTF-8", "ALL"), "BAD"),
        (("DATE", "UTF-8", "ALL"), "BAD"),
        (("(REVERSE)", "UTF-8", "ALL"), "BAD"),
        (("(DATE)", "UTF-8"), "BAD"),
        (("(DATE)", "UTF-8", "NOSUCHKEY"), "BAD"),
        (("RETURN (SAVE) (DATE)", "UTF-8", "ALL"), "BAD"),
        (("(" + " ".join(["DATE"] * 40) + ")", "UTF-8", "ALL"), "BAD"),
    ]:
        assert _status(imap, "SORT", *args) == status, args
    typ, data = imap.sort("(DATE)", "ISO-8859-1", "ALL")
    assert typ == "NO" and data == [b"[BADCHARSET (UTF-8 US-ASCII)] Unknown charset"]
    for args in [("NOSUCH", "UTF-8", "ALL"), ("REFERENCES",), ("REFERENCES", "UTF-8")]:
        assert _status(imap, "THREAD", *args) == "BAD", args
    assert _status(imap, "THREAD", "REFERENCES", "KOI8-R", "ALL") == "NO"
    # Huge sequence sets name what exists, as SEARCH does.
    assert _sort(imap, "(ARRIVAL)", "UTF-8", "1:4294967295") == [1, 2, 3]
    assert _sort(imap, "(ARRIVAL)", "UTF-8", ",".join(["1:*"] * 500)) == [1, 2, 3]
    typ, data = imap.uid("SORT", "(ARRIVAL)", "UTF-8", "UID", "4000000000:*")
    assert typ == "OK" and data == [b"3"]  # "*" is the largest UID, as in SEARCH
    typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
    assert [item[1] for item in data if isinstance(item, tuple)] == [
        _message(i).replace(b"\r\n", b"\r\n") for i in range(3)
    ]
    imap.logout()


def test_unreadable_message_is_still_listed(rig: ImapRig) -> None:
    _deliver(rig, 4)

    async def blob_ids() -> list[bytes]:
        async with rig.engine.connect() as conn:
            rows = await conn.execute(select(t.cm_messages.c.blob_id).order_by(t.cm_messages.c.uid))
            return [bytes(row[0]) for row in rows]

    path = rig.blobs.path_of(BlobId(rig.run(blob_ids())[1]))
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01
    path.write_bytes(bytes(raw))
    imap = _login(rig)
    imap.select("INBOX")
    # Message 2 cannot be read: it sorts with empty keys (its arrival is still known).
    assert _sort(imap, "(SUBJECT)", "UTF-8", "ALL") == [2, 4, 1, 3]
    assert _sort(imap, "(ARRIVAL)", "UTF-8", "ALL") == [1, 2, 3, 4]
    typ, data = imap.thread("REFERENCES", "UTF-8", "ALL")
    assert typ == "OK" and sorted(int(n) for n in data[0].replace(b"(", b" ").replace(
        b")", b" ").split()) == [1, 2, 3, 4]  # fmt: skip
    imap.logout()


def test_several_users_and_sessions_sort_at_once(rig: ImapRig) -> None:
    rig.add_user("bob@example.org", "bob-pw")
    _deliver(rig)
    for index in range(10, 20):
        rig.deliver(_message(index), email="bob@example.org")
    errors: list[str] = []

    def session(user: str, password: str, expected: list[int]) -> None:
        imap = _login(rig, user, password)
        imap.select("INBOX")
        for _ in range(5):
            got = _sort(imap, "(DATE)", "UTF-8", "ALL")
            if got != expected:
                errors.append(f"{user}: {got}")
        imap.logout()

    threads = [
        threading.Thread(target=session, args=(USER, PASSWORD, EXPECTED["DATE"])),
        threading.Thread(target=session, args=(USER, PASSWORD, EXPECTED["DATE"])),
        threading.Thread(target=session, args=("bob@example.org", "bob-pw", EXPECTED["DATE"])),
        threading.Thread(target=session, args=("bob@example.org", "bob-pw", EXPECTED["DATE"])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
