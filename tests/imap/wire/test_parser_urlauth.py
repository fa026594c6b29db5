"""GENURLAUTH, URLFETCH and RESETKEY parse (RFC 4467 section 9)."""

from __future__ import annotations

import pytest

from cryptmail.errors import ParseError
from cryptmail.imap.wire import parse_line
from cryptmail.imap.wire._parser_urlauth import MAX_URLS, GenUrlAuth, ResetKey, UrlFetch


def test_commands() -> None:
    assert parse_line(b'a GENURLAUTH "imap://u@h/INBOX/;UID=1;URLAUTH=authuser" internal') == (
        GenUrlAuth("a", (("imap://u@h/INBOX/;UID=1;URLAUTH=authuser", "INTERNAL"),))
    )
    assert parse_line(b"a GENURLAUTH x INTERNAL y XSAMPLE").urls == (  # type: ignore[attr-defined]
        ("x", "INTERNAL"),
        ("y", "XSAMPLE"),
    )
    assert parse_line(b'a URLFETCH "x" {1}\r\n', b"y") == UrlFetch("a", ("x", "y"))
    assert parse_line(b"a RESETKEY") == ResetKey("a", None, ())
    assert parse_line(b"a RESETKEY inbox INTERNAL") == ResetKey("a", "INBOX", ("INTERNAL",))
    # Undecodable bytes stay a (bad) URL for the handler's NIL, not a BAD for all.
    assert parse_line(b"a URLFETCH {2}\r\n", b"\xff\xfe").urls == ("\ufffd\ufffd",)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "line",
    [
        b"a GENURLAUTH",
        b"a GENURLAUTH x",
        b"a GENURLAUTH x (INTERNAL)",
        b"a URLFETCH",
        b"a URLFETCH x  y",
        b"a URLFETCH " + b" ".join([b"x"] * (MAX_URLS + 1)),
        b"a RESETKEY INBOX (x)",
        b"a UID URLFETCH x",
    ],
)
def test_malformed(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse_line(line)
