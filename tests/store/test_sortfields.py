"""`SortHeader`: the header taken from a message's pieces as they pass, whatever their
cut, is the header taken from the message whole (so delivery's record, made from a
spool, and an import's, made from the bytes on their way to the blob, agree)."""

from __future__ import annotations

import pytest

from cryptmail.store import MAX_SORT_HEADER, SortHeader, header_sort_fields

MESSAGES = [
    b"Subject: plain\r\nFrom: a@b\r\n\r\nbody: x\r\nSubject: no\r\n",
    b"Subject: bare\nFrom: a@b\n\nbody\nSubject: no\n",
    b"Subject: mixed\r\n\nSubject: no\r\n\r\n",
    b"Subject: x\r\n\r\n",
    b"\r\nSubject: after an empty line: the body\r\n",
    b"\nSubject: after a bare empty line\n",
    b"Subject: no empty line at all\r\nFrom: a@b\r\n",
    b"Subject: cr\r\r\nFrom: a@b\r\n\r\nSubject: no\r\n",
]


def _fed(message: bytes, size: int) -> SortHeader:
    header = SortHeader()
    for start in range(0, len(message), size):
        if header.feed(message[start : start + size]):
            break
    return header


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 1000])
@pytest.mark.parametrize("message", MESSAGES, ids=range(len(MESSAGES)))
def test_pieces_of_any_size_give_the_whole_messages_record(message: bytes, size: int) -> None:
    whole = SortHeader()
    whole.feed(message)
    assert _fed(message, size).record() == whole.record()
    assert b"Subject: no" not in (whole.record() or b"")


def test_the_header_ends_where_the_first_empty_line_does() -> None:
    header = _fed(b"Subject: a\r\n\r\nSubject: b\r\n\r\n", 1)
    assert header.complete
    assert header.record() == header_sort_fields(b"Subject: a\r\n")


def test_no_record_past_the_longest_header() -> None:
    long = b"X-Long: " + b"y" * MAX_SORT_HEADER + b"\r\nSubject: late\r\n\r\nbody\r\n"
    header = _fed(long, 1 << 16)
    assert header.complete and header.record() is None
    assert _fed(long[: MAX_SORT_HEADER // 2] + b"\r\n\r\n", 7).record() is not None
