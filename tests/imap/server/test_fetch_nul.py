"""Issue "Many clients at once", observation 14: a NUL byte never leaves the server in
a non-BINARY FETCH (RFC 3501 forbids it in a literal). Dovecot's rule, for messages
with and without bare LF: NUL is sent as 0x80, one byte for one, so every size the
server reports (RFC822.SIZE, BODYSTRUCTURE, the literal header) stays what is sent."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..raw_client import RawClient
from ..server_rig import ImapRig, start_rig

_CRLF = (
    b"From: a@example.org\r\nSubject: nul\r\nContent-Type: text/plain\r\n\r\n"
    b"before\x00after\r\nsecond \x00\x00 line\r\n"
)
_BARE_LF = _CRLF.replace(b"\r\n", b"\n")
_BIG_CRLF = _CRLF + (b"filler \x00 line of text\r\n" * 20_000)  # streamed, over 64 KiB
_BIG_BARE_LF = _BIG_CRLF.replace(b"\r\n", b"\n")
_MESSAGES = (_CRLF, _BARE_LF, _BIG_CRLF, _BIG_BARE_LF)
_LITERAL = re.compile(rb"(BODY\[[^\]]*\](?:<\d+>)?|RFC822(?:\.TEXT|\.HEADER)?) \{(\d+)\}\r\n")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _literals(response: bytes) -> dict[bytes, bytes]:
    """Each literal of one FETCH response by item name, checked against its header."""
    out: dict[bytes, bytes] = {}
    pos = 0
    while (found := _LITERAL.search(response, pos)) is not None:
        size = int(found.group(2))
        start = found.end()
        out[found.group(1)] = response[start : start + size]
        pos = start + size
        # What follows the literal is the rest of the response: syntax, not data.
        assert response[pos : pos + 1] in (b" ", b")"), response[pos - 10 : pos + 10]
    return out


def _crlf(message: bytes) -> bytes:
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.mark.parametrize("index", range(1, len(_MESSAGES) + 1))
def test_nul_becomes_0x80_in_every_fetch(rig: ImapRig, index: int) -> None:
    for message in _MESSAGES:
        rig.deliver(message)
    message = _MESSAGES[index - 1]
    expected = _crlf(message).replace(b"\x00", b"\x80")
    header, body = expected.split(b"\r\n\r\n", 1)
    readers = [RawClient.connect(rig.port) for _ in range(2)]  # two sessions, same answer
    for imap in readers:
        imap.login()
        assert b" OK " in imap.ask(b"EXAMINE INBOX")[1]
        untagged, done = imap.ask(
            b"FETCH %d (RFC822.SIZE BODYSTRUCTURE BODY.PEEK[] BODY.PEEK[TEXT] BODY.PEEK[1] "
            b"BODY.PEEK[]<3.20> BODY.PEEK[TEXT]<2.9>)" % index
        )
        assert b" OK " in done and len(untagged) == 1
        response = untagged[0]
        assert b"\x00" not in response
        got = _literals(response)
        assert got[b"BODY[]"] == expected
        assert got[b"BODY[TEXT]"] == body
        assert got[b"BODY[1]"] == body
        assert got[b"BODY[]<3>"] == expected[3:23]
        assert got[b"BODY[TEXT]<2>"] == body[2:11]
        assert b"RFC822.SIZE %d " % len(expected) in response
        assert b' NIL NIL "7bit" %d %d' % (len(body), body.count(b"\r\n")) in response
        untagged, done = imap.ask(b"FETCH %d (RFC822 RFC822.TEXT)" % index)
        response = untagged[0]
        assert b"\x00" not in response
        got = _literals(response)
        assert got[b"RFC822"] == expected and got[b"RFC822.TEXT"] == body
        imap.close()
