"""Parsing SORT (RFC 5256, ESORT RETURN of RFC 5267, DISPLAY keys of RFC 5957) and THREAD."""

from __future__ import annotations

import pytest

from cryptmail.errors import ParseError, UnknownCharset
from cryptmail.imap.wire._parser import parse_line
from cryptmail.imap.wire._requests import SearchAnd, SearchFlag, SearchText, Sort, Thread


def test_sort_criteria_charset_program() -> None:
    command = parse_line(b"a1 UID SORT (REVERSE date Subject DISPLAYFROM) utf-8 SEEN")
    assert command == Sort(
        "a1",
        (("DATE", True), ("SUBJECT", False), ("DISPLAYFROM", False)),
        SearchAnd((SearchFlag("\\Seen", True),)),
        "UTF-8",
        uid=True,
    )
    command = parse_line(b'a2 SORT RETURN (count MIN min) (SIZE) US-ASCII BODY "x"')
    assert isinstance(command, Sort)
    assert command.returns == ("COUNT", "MIN") and command.charset == "US-ASCII"
    assert command.program == SearchAnd((SearchText("x", include_headers=False),))
    assert parse_line(b"a3 SORT RETURN () (ARRIVAL) UTF-8 ALL").returns == ()  # type: ignore[attr-defined]


def test_sort_program_strings_are_utf8() -> None:
    word = "résumé".encode()
    command = parse_line(b"a SORT (DATE) UTF-8 SUBJECT {%d}\r\n" % len(word), word)
    assert isinstance(command, Sort)
    assert command.program.keys[0].value == "résumé"  # type: ignore[union-attr]


def test_thread() -> None:
    assert parse_line(b"t THREAD references UTF-8 ALL") == Thread(
        "t", "REFERENCES", SearchAnd((SearchAnd(()),)), "UTF-8"
    )
    command = parse_line(b"t UID THREAD ORDEREDSUBJECT US-ASCII 1:5")
    assert isinstance(command, Thread) and command.uid and command.algorithm == "ORDEREDSUBJECT"


@pytest.mark.parametrize(
    "line",
    [
        b"a SORT", b"a SORT (DATE)", b"a SORT (DATE) UTF-8", b"a SORT () UTF-8 ALL",
        b"a SORT DATE UTF-8 ALL", b"a SORT (FOO) UTF-8 ALL", b"a SORT (REVERSE) UTF-8 ALL",
        b"a SORT (REVERSE REVERSE DATE) UTF-8 ALL", b"a SORT (DATE)  UTF-8 ALL",
        b"a SORT (DATE UTF-8 ALL", b"a SORT RETURN (SAVE) (DATE) UTF-8 ALL",
        b"a SORT RETURN (PARTIAL 0:5) (DATE) UTF-8 ALL", b"a SORT (DATE) UTF-8 ALL extra(",
        b"a SORT (" + b"DATE " * 32 + b"DATE) UTF-8 ALL", b"a THREAD", b"a THREAD REFS UTF-8 ALL",
        b"a THREAD REFERENCES UTF-8", b"a THREAD (REFERENCES) UTF-8 ALL",
    ],
)  # fmt: skip
def test_malformed_is_a_parse_error(line: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_line(line)
    assert not isinstance(info.value, UnknownCharset)
    assert info.value.tag == "a"


@pytest.mark.parametrize(
    "line",
    [b"a SORT (DATE) ISO-8859-1 ALL", b"a THREAD REFERENCES KOI8-R ALL", b'a SORT (DATE) "" ALL'],
)
def test_other_charsets_are_refused_with_badcharset(line: bytes) -> None:
    with pytest.raises(UnknownCharset):
        parse_line(line)
