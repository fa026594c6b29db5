"""ManageSieve command lines and responses (RFC 5804 section 4)."""

from __future__ import annotations

import pytest

from cryptmail.managesieve._wire import (
    Literal,
    Number,
    WireError,
    capability_lines,
    literal,
    no,
    ok,
    parse_line,
    quote,
    trailing_literal,
)


def test_a_command_with_quoted_strings_and_a_number() -> None:
    words, lit = parse_line(b'havespace "my script" 1234', first=True)
    assert words == ["HAVESPACE", b"my script", Number(1234)]
    assert lit is None


def test_escapes_in_quoted_strings() -> None:
    words, _ = parse_line(rb'SETACTIVE "a\"b\\c"', first=True)
    assert words == ["SETACTIVE", b'a"b\\c']


@pytest.mark.parametrize("marker", [b"{12+}", b"{12}"])
def test_a_literal_at_the_end(marker: bytes) -> None:
    words, lit = parse_line(b'PUTSCRIPT "name" ' + marker, first=True)
    assert words == ["PUTSCRIPT", b"name"]
    assert lit == Literal(12)


def test_the_line_after_a_literal() -> None:
    assert parse_line(b"", first=False) == ([], None)
    assert parse_line(b' "new"', first=False) == ([b"new"], None)
    assert parse_line(b" {3+}", first=False) == ([], Literal(3))


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"1234",
        b'"quoted"',
        b'NOOP  "two spaces"',
        b'NOOP "unclosed',
        rb'NOOP "bad \n escape"',
        b"NOOP atom",
        b'NOOP "x"{3+}',
        b"NOOP " + b'"' + b"x" * 1025 + b'"',
        b"NOOP " + b" ".join([b'"a"'] * 9),
        b"NOOP ",
        b"NOOP\x00",
    ],
)
def test_malformed_lines(line: bytes) -> None:
    with pytest.raises(WireError):
        parse_line(line, first=True)


def test_a_continuation_must_start_with_a_space() -> None:
    with pytest.raises(WireError):
        parse_line(b'"next"', first=False)


def test_trailing_literal_of_a_broken_line() -> None:
    assert trailing_literal(b"garbage!! {42+}") == 42
    assert trailing_literal(b"NOOP") is None


def test_quote_picks_a_literal_for_what_a_quoted_string_cannot_hold() -> None:
    assert quote('a"b') == b'"a\\"b"'
    assert quote("line\r\nbreak") == b"{11}\r\nline\r\nbreak"
    assert quote("x" * 1025).startswith(b"{1025}\r\n")
    assert literal(b"abc") == b"{3}\r\nabc"


def test_responses() -> None:
    assert ok() == b"OK\r\n"
    assert ok("Done.", 'TAG "x"') == b'OK (TAG "x") "Done."\r\n'
    assert no("Nope.", "QUOTA/MAXSIZE") == b'NO (QUOTA/MAXSIZE) "Nope."\r\n'
    assert capability_lines([("VERSION", "1.0"), ("STARTTLS", None)]) == (
        b'"VERSION" "1.0"\r\n"STARTTLS"\r\n'
    )
