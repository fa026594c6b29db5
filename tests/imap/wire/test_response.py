"""Response serialization: strings as Dovecot chooses them, codes, FETCH with slots."""

from __future__ import annotations

import datetime as dt

import pytest

from cryptmail.imap.wire._response import (
    Atom,
    FetchResponse,
    LiteralSlot,
    Raw,
    append_astring,
    append_human_string,
    append_nstring,
    append_value,
    continuation,
    format_date_time,
    response_code,
    tagged,
    untagged,
)


def written(writer: object, value: object) -> bytes:
    out = bytearray()
    writer(out, value)  # type: ignore[operator]  # the helpers share one shape
    return bytes(out)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, b"NIL"),
        (b"", b'""'),
        (b"plain", b'"plain"'),
        (b'a"b\\c', b'"a\\"b\\\\c"'),
        (b'""""', b'"\\"\\"\\"\\""'),  # four escapes still quoted
        (b'"""""', b'{5}\r\n"""""'),  # the fifth makes it a literal
        (b"caf\xc3\xa9", b"{5}\r\ncaf\xc3\xa9"),
        (b"a\r\nb", b"{4}\r\na\r\nb"),
        ("ünï", b"{5}\r\n\xc3\xbcn\xc3\xaf"),
    ],
)
def test_nstring(value: bytes | str | None, expected: bytes) -> None:
    assert written(append_nstring, value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"Hello", b'"Hello"'),
        (b"  Hello   world\n x ", b"{13}\r\nHello world x"),
        (b"   ", b'""'),
        (b'say "hi"', b'{8}\r\nsay "hi"'),
        (b"a\0b", b"{3}\r\na\x80b"),
    ],
)
def test_human_string(value: bytes, expected: bytes) -> None:
    assert written(append_human_string, value) == expected


def test_astring_and_values() -> None:
    assert written(append_astring, "INBOX") == b"INBOX"
    assert written(append_astring, "nil") == b'"nil"'
    assert written(append_astring, "a b") == b'"a b"'
    out = bytearray()
    append_value(out, [Atom("\\Seen"), 3, None, "x", [Raw(b"(1)")]])
    assert bytes(out) == b'(\\Seen 3 NIL "x" ((1)))'
    with pytest.raises(TypeError):
        append_value(bytearray(), True)


def test_status_lines() -> None:
    assert untagged(17, Atom("EXISTS")) == b"* 17 EXISTS\r\n"
    code = response_code("COPYUID", 38505, Atom("304,319:320"), Atom("3956:3958"))
    assert (
        tagged("A3", "OK", "Done", code) == b"A3 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"
    )
    assert tagged("A4", "NO", "No such mailbox", response_code("TRYCREATE")) == (
        b"A4 NO [TRYCREATE] No such mailbox\r\n"
    )
    assert continuation() == b"+ Ready for literal data\r\n"
    with pytest.raises(ValueError):
        tagged("A5", "BAD", "two\r\nlines")


def test_date_time() -> None:
    stamp = dt.datetime(2024, 3, 5, 9, 7, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert format_date_time(stamp) == b'"05-Mar-2024 09:07:01 -0500"'
    assert format_date_time(dt.datetime(2024, 1, 1)) == b'"01-Jan-2024 00:00:00 +0000"'


def test_fetch_response_with_streamed_body() -> None:
    response = (
        FetchResponse(12)
        .add("UID", 7)
        .add("FLAGS", [Atom("\\Seen")])
        .add_streamed("BODY[]", 2048)
        .add("BODYSTRUCTURE", Raw(b'("text" "plain" NIL NIL NIL "7bit" 0 0)'))
    )
    pieces = list(response.pieces())
    assert pieces[0] == b"* 12 FETCH (UID 7 FLAGS (\\Seen) BODY[] {2048}\r\n"
    assert pieces[1] == LiteralSlot("BODY[]", 2048)
    assert pieces[2] == b' BODYSTRUCTURE ("text" "plain" NIL NIL NIL "7bit" 0 0))\r\n'
    with pytest.raises(ValueError):
        response.to_bytes()


def test_fetch_response_small() -> None:
    response = FetchResponse(1).add("UID", 4).add_literal("BODY[1]", b"hi").add_literal("X", None)
    assert response.to_bytes() == b"* 1 FETCH (UID 4 BODY[1] {2}\r\nhi X NIL)\r\n"
