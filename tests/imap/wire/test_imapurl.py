"""IMAP URLs as CATENATE takes them (RFC 5092 subset), and with URLAUTH (RFC 4467)."""

from __future__ import annotations

import datetime as dt

import pytest

from cryptmail.errors import ParseError
from cryptmail.imap.wire import _requests as rq
from cryptmail.imap.wire._imapurl import BadUrl, ImapUrl, UrlAuth, parse_imap_url
from cryptmail.imap.wire._parser import parse_line


def test_accepted_forms() -> None:
    assert parse_imap_url("/INBOX;UIDVALIDITY=123/;UID=5/;SECTION=1.2/;PARTIAL=0.10") == ImapUrl(
        None, "INBOX", 123, 5, rq.Section((1, 2)), (0, 10)
    )
    url = parse_imap_url(
        "imap://bob%40example.org;AUTH=*@mail.example.org:143/Work%2F2025/;UID=9"
        "/;SECTION=HEADER.FIELDS%20(SUBJECT%20FROM)"
    )
    assert url.user == "bob@example.org" and url.mailbox == "Work/2025" and url.uid == 9
    assert url.section == rq.Section((), "HEADER.FIELDS", ("SUBJECT", "FROM"))
    assert parse_imap_url("imap://host/Caf%C3%A9/Sub/;UID=1").mailbox == "Café/Sub"
    assert parse_imap_url("/inbox/;uid=3/;partial=7").partial == (7, 2**32)


@pytest.mark.parametrize(
    "url",
    [
        "/INBOX;UID=5",
        "http://x/INBOX/;UID=1",
        "//host/INBOX/;UID=1",
        "/INBOX/;UID=1;EXPIRE=2030-01-01T00:00:00Z;URLAUTH=anonymous:internal:0123",
        "/INBOX/;UID=0",
        "/INBOX/;UID=1/;SECTION=BOGUS",
        "/%FF/;UID=1",
        "/INBOX/;UID=1/;SECTION=1/trailing",
        "/INBOX/;UID=99999999999",
        "/" + "a" * 5000 + "/;UID=1",
        "imap://host/Café/;UID=1",
    ],
)
def test_refused(url: str) -> None:
    with pytest.raises(BadUrl):
        parse_imap_url(url)


def test_append_catenate_parses() -> None:
    cmd = parse_line(
        b'a APPEND Drafts (\\Draft) CATENATE (TEXT {3}\r\n URL "/INBOX/;UID=1" TEXT ~{2}\r\n)'
        b" {1}\r\n",
        b"abc",
        b"\0z",
        b"x",
    )
    assert isinstance(cmd, rq.Append)
    first, second = cmd.messages
    assert first.flags == ("\\Draft",) and first.catenate == (
        rq.CatenatePart(text=b"abc"),
        rq.CatenatePart(url="/INBOX/;UID=1"),
        rq.CatenatePart(text=b"\0z"),
    )
    assert second.catenate is None and second.data == b"x"
    for bad in (
        b"a APPEND INBOX CATENATE ()",
        b'a APPEND INBOX CATENATE (TEXT "x")',
        b"a APPEND INBOX CATENATE (URL)",
        b"a APPEND INBOX CATENATE (URL x",
        b"a APPEND INBOX CATENATE (" + b" ".join([b"URL x"] * 300) + b")",
    ):
        with pytest.raises(ParseError):
            parse_line(bad)


def test_urlauth_parts() -> None:
    url = parse_imap_url(
        "imap://joe%40example.org@h/INBOX/;UID=20/;SECTION=1.2;EXPIRE=2030-01-01T02:00:00Z"
        ";URLAUTH=Submit+Fred%40X:internal:91354a47",
        urlauth=True,
    )
    assert (url.user, url.mailbox, url.uid, str(url.section)) == (
        "joe@example.org",
        "INBOX",
        20,
        "1.2",
    )
    assert url.auth == UrlAuth(
        "submit+fred@x", dt.datetime(2030, 1, 1, 2, 0), "INTERNAL", "91354a47"
    )


def test_urlauth_rump_and_expire() -> None:
    url = parse_imap_url(
        "imap://joe@h/Sent/;UID=2/;PARTIAL=0.5;EXPIRE=2030-01-01T02:00:00+02:00;URLAUTH=authuser",
        urlauth=True,
    )
    assert url.partial == (0, 5) and url.auth is not None and url.auth.rump
    assert url.auth.expire == dt.datetime(2030, 1, 1, 0, 0)


@pytest.mark.parametrize(
    "url",
    [
        "/INBOX/;UID=1;URLAUTH=authuser",  # relative: no owner
        "imap://joe@h/INBOX/;UID=1",  # no URLAUTH
        "imap://joe@h/INBOX/;UID=1;URLAUTH=someone",
        "imap://joe@h/INBOX/;UID=1;URLAUTH=user+",
        "imap://joe@h/INBOX/;UID=1;EXPIRE=2030-01-01;URLAUTH=authuser",  # no time
        "imap://joe@h/INBOX/;UID=1;EXPIRE=2030-01-01T00:00:00;URLAUTH=authuser",  # no zone
        "imap://joe@h/INBOX/;UID=1;EXPIRE=bogus;URLAUTH=authuser",
        "imap://joe@h/INBOX/;UID=1;URLAUTH=authuser:internal:xyz",
        "imap://joe@h/INBOX/;UID=1;URLAUTH=authuser;URLAUTH=authuser",
        "imap://joe@h/INBOX/;UID=1;URLAUTH=authuser:internal",
    ],
)
def test_urlauth_refused(url: str) -> None:
    with pytest.raises(BadUrl):
        parse_imap_url(url, urlauth=True)
