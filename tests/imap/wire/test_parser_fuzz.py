"""Hypothesis fuzzing: the reader and parser only ever raise ParseError/InputTooLarge."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptmail.errors import InputTooLarge, ParseError
from cryptmail.imap.wire._reader import CommandReader, ReaderLimits

_LIMITS = ReaderLimits(max_line=512, max_literal=256, max_command=2048, max_append=1024)
_TOKENS = [
    b"a1 ", b"UID ", b"FETCH ", b"SEARCH ", b"APPEND ", b"STORE ", b"LIST ", b"SELECT ",
    b"LOGIN ", b"ID ", b"(", b")", b"[", b"]", b"<", b">", b"{", b"}", b"{3}\r\n",
    b"{2+}\r\n", b"{0}\r\n", b'"', b"\\", b"*", b":", b",", b" ", b"\r\n", b"\n",
    b"BODY.PEEK[", b"HEADER.FIELDS", b"1.2", b"NOT ", b"OR ", b"INBOX", b"\x00", b"\xff",
    b"&AGE-", b"1-Feb-2024", b"CHANGEDSINCE ", b"QRESYNC ", b"+FLAGS ", b"\\Seen",
    # issue 16: BINARY, literal8, CATENATE, UTF8, COMPRESS, SAVEDATE, OBJECTID
    b"BINARY[", b"BINARY.SIZE[", b"BINARY.PEEK[", b"~{3}\r\n", b"~{2+}\r\n", b"~",
    b"CATENATE ", b"TEXT ", b"URL ", b'"/INBOX/;UID=1/;SECTION=1"', b"UTF8 (", b"COMPRESS ",
    b"DEFLATE", b"SAVEDATE", b"SAVEDBEFORE ", b"EMAILID", b"MAILBOXID", b"ENABLE ",
    b"SORT ", b"THREAD ", b"(DATE) ", b"REVERSE ", b"UTF-8 ", b"REFERENCES ", b"RETURN ",
]  # fmt: skip


def _exercise(data: bytes, step: int, utf8: bool = False) -> None:
    reader = CommandReader(_LIMITS)
    reader.utf8_names = utf8
    for start in range(0, len(data), step):
        reader.feed(data[start : start + step])
        for _ in range(10_000):  # bounded: a reader that loops would fail the test
            try:
                event = reader.next_event()
            except ParseError:
                continue
            except InputTooLarge as exc:
                if not exc.recoverable:
                    return
                continue
            if event is None:
                break
        else:
            raise AssertionError("reader did not ask for more input")
    assert reader.buffered <= len(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.integers(1, 64))
def test_random_bytes(data: bytes, step: int) -> None:
    _exercise(data, step)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_TOKENS), max_size=80), st.integers(1, 64))
def test_token_soup(tokens: list[bytes], step: int) -> None:
    _exercise(b"".join(tokens), step)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_TOKENS), max_size=80), st.integers(1, 64))
def test_token_soup_with_utf8_names(tokens: list[bytes], step: int) -> None:
    _exercise(b"".join(tokens), step, utf8=True)
