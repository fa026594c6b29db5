"""SEARCH evaluation: boolean structure, dates by day, headers, decoded text."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pytest

from cryptmail.imap.message._analysis import analyze_message
from cryptmail.imap.message._search import SearchContext, compile_search, search
from cryptmail.imap.message._textsearch import (
    decode_header_value,
    iter_message_text,
    stream_contains,
)
from cryptmail.imap.wire._parser import parse_line
from cryptmail.imap.wire._requests import Search

UTC = dt.UTC
NOW = dt.datetime(2024, 3, 10, 12, 0, tzinfo=UTC)


@dataclass
class View:
    """An in-memory MessageView over raw message bytes."""

    uid: int
    sequence: int
    message: bytes
    flags: frozenset[str] = frozenset()
    internal_date: dt.datetime = NOW
    modseq: int = 1
    headers: dict[str, list[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        head = self.message.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            self.headers.setdefault(name.decode().lower(), []).append(value.strip())

    @property
    def size(self) -> int:
        return len(self.message)

    @property
    def save_date(self) -> dt.datetime:
        """Saved a day after arrival: the SAVED* keys must not read the internal date."""
        return self.internal_date + dt.timedelta(days=1)

    def header_values(self, name: str) -> Sequence[bytes]:
        return self.headers.get(name.lower(), [])

    def text(self, *, include_headers: bool) -> Iterable[str]:
        part_map = analyze_message(self.message).part_map

        def read(offset: int, length: int) -> Iterable[bytes]:
            data = self.message[offset : offset + length]
            return (data[i : i + 5] for i in range(0, len(data), 5))

        return iter_message_text(read, part_map, include_headers=include_headers)


MESSAGES = [
    View(
        1, 1,
        b"From: Alice <alice@example.org>\r\nSubject: =?utf-8?q?Caf=C3=A9?= plans\r\n"
        b"Date: Tue, 5 Mar 2024 23:30:00 -0800\r\n\r\nLet us meet.\r\n",
        frozenset({"\\Seen"}), dt.datetime(2024, 3, 6, 7, 30, tzinfo=UTC), 5,
    ),
    View(
        2, 2,
        b"From: Bob <bob@example.com>\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nR=E9sum=E9 attached=\r\n soon\r\n",
        frozenset({"\\Recent", "$Important"}), dt.datetime(2024, 3, 1, 0, 0, tzinfo=UTC), 9,
    ),
    View(
        3, 3,
        b"From: Carol <c@example.net>\r\nSubject: photo\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: text/plain\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\naGlkZGVuIHRyZWFzdXJl\r\n--z--\r\n",
        frozenset({"\\Flagged", "\\Recent", "\\Seen"}), dt.datetime(2023, 12, 31, tzinfo=UTC), 3,
    ),
]  # fmt: skip


def run(command: bytes, *literals: bytes) -> list[int]:
    parsed = parse_line(command, *literals)
    assert isinstance(parsed, Search)
    context = SearchContext(largest_uid=3, largest_sequence=3, now=NOW)
    return [view.uid for view in search(parsed.program, context, MESSAGES)]


@pytest.mark.parametrize(
    ("command", "uids"),
    [
        (b"a SEARCH ALL", [1, 2, 3]),
        (b"a SEARCH SEEN", [1, 3]),
        (b"a SEARCH UNSEEN", [2]),
        (b"a SEARCH NEW", [2]),
        (b"a SEARCH OLD", [1]),
        (b"a SEARCH KEYWORD $important", [2]),
        (b"a SEARCH OR FLAGGED UNSEEN", [2, 3]),
        (b"a SEARCH NOT (SEEN FLAGGED)", [1, 2]),
        (b"a SEARCH 2:*", [2, 3]),
        (b"a SEARCH UID *", [3]),
        (b"a SEARCH LARGER 150", [2, 3]),
        (b"a SEARCH SMALLER 150", [1]),
        (b"a SEARCH MODSEQ 5", [1, 2]),
        (b"a SEARCH SINCE 6-Mar-2024", [1]),
        (b"a SEARCH ON 6-Mar-2024", [1]),
        (b"a SEARCH BEFORE 1-Mar-2024", [3]),
        (b"a SEARCH SENTON 5-Mar-2024", [1]),  # the Date: header's own day
        (b"a SEARCH SENTBEFORE 1-Jan-2030", [1, 2, 3]),  # no Date: means 1 Jan 1970
        (b"a SEARCH SENTSINCE 1-Jan-1971", [1]),
        (b"a SEARCH YOUNGER 432000", [1]),
        (b"a SEARCH OLDER 432000", [2, 3]),
        (b"a SEARCH FROM ALICE", [1]),
        (b'a SEARCH SUBJECT "caf"', [1]),  # encoded word decoded, case folded
        (b'a SEARCH HEADER Content-Transfer-Encoding ""', [2]),
        (b"a SEARCH BODY meet", [1]),
        (b"a SEARCH BODY treasure", [3]),  # base64 text part decoded
        (b"a SEARCH TEXT photo", [3]),  # headers count for TEXT
        (b"a SEARCH BODY photo", []),
        (b"a SEARCH SAVEDON 7-Mar-2024", [1]),
        (b"a SEARCH SAVEDBEFORE 7-Mar-2024", [2, 3]),
        (b"a SEARCH SAVEDSINCE 2-Mar-2024", [1, 2]),
        (b"a SEARCH SAVEDATESUPPORTED", [1, 2, 3]),
    ],
)
def test_search_keys(command: bytes, uids: list[int]) -> None:
    assert run(command) == uids


def test_charset_literal_search_matches_decoded_latin1_body() -> None:
    assert run(b"a SEARCH CHARSET UTF-8 BODY {8}\r\n", "Résumé".encode()) == [2]


def test_cheap_keys_run_before_text() -> None:
    calls: list[int] = []

    class Counting(View):
        def text(self, *, include_headers: bool) -> Iterable[str]:
            calls.append(self.uid)
            return super().text(include_headers=include_headers)

    views = [Counting(v.uid, v.sequence, v.message, v.flags, v.internal_date) for v in MESSAGES]
    parsed = parse_line(b"a SEARCH BODY meet UNSEEN")
    assert isinstance(parsed, Search)
    test = compile_search(parsed.program, SearchContext(3, 3, NOW))
    assert [v.uid for v in views if test(v)] == []
    assert calls == [2]  # only the unseen message had its text read


def test_text_helpers() -> None:
    assert decode_header_value(b"=?utf-8?q?a?= =?utf-8?b?Yg==?=\n c") == "ab c"
    assert decode_header_value(b"caf\xe9") == "café"
    assert stream_contains(["abc", "DEF"], "cd")
    assert not stream_contains(["abc", "def"], "ce")
    assert stream_contains(["ﬁne"], "FINE")  # compatibility folding
