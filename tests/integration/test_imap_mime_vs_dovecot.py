"""Differential test: our ENVELOPE / BODY / BODYSTRUCTURE / BODY[section] against Dovecot 2.3.

The generated corpus (``tests/imap/mime_corpus.py``) plus hand-made edge cases go into a
private Dovecot's Maildir byte for byte (CRLF and bare-LF messages stay as they are);
Dovecot answers FETCH over IMAP (imaplib) and we compare with what
:mod:`cryptmail.imap` computes from the same bytes.

SEARCH is compared as the set of matching message numbers for a list of queries
(header, address, body and text keys with encoded words, charsets and transfer
encodings in play).

Normalisations: none. The responses are compared byte for byte, literals and quoting
included, because clients cache BODYSTRUCTURE and a server moving from Dovecot to
cryptmail should say exactly what Dovecot said. The one divergence we know of is not
exercised here: Dovecot's HEADER.FIELDS on a message/rfc822 part whose header was cut
short by a boundary reads on until it meets an empty line, however far that is; we
follow it for at most ``FILTER_LOOKAHEAD`` bytes.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import re
from collections.abc import Iterable, Iterator, Sequence

import pytest

from cryptmail.imap.message._analysis import MessageAnalysis, analyze_message
from cryptmail.imap.message._partmap import VirtualStream
from cryptmail.imap.message._search import SearchContext, search
from cryptmail.imap.message._sections import header_section
from cryptmail.imap.message._textsearch import iter_message_text
from cryptmail.imap.wire._parser import parse_line
from cryptmail.imap.wire._requests import Search, Section
from imap.mime_corpus import generate_corpus

from .servers.dovecot import Dovecot, DovecotFactory, DovecotUser, dovecot_instances

pytestmark = pytest.mark.integration

USER = "mime"
PASSWORD = "mime-pw"

EDGE_CASES = [
    b"",
    b"no header line\n",
    b"Subject: x\n",
    b"Subject: plain\n\nbody\nline2\n",
    b'From: Dr. Carol "CJ" Jones a.b.c@example.com\r\nTo: a. b@c, x@a..b, "foo"\r\n'
    b"Cc: a@b, , (c) d@e\r\nFrom: second@example.org\r\nDate: Wed,\r\n 5 Jun 2019 08:09:10\r\n\r\n",
    b"MIME-Version: 1.0\r\nContent-Type: image/png x; d=e\r\n\r\nbody\r\n",
    b"MIME-Version: 1.0\r\nContent-Type: text\r\n\r\nbody\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n"
    b"\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nX: y\r\n--b--\r\n",
    b"Content-Type: multipart/alternative; boundary=----=_A\r\n\r\n------=_A\r\n"
    b"Content-Type: multipart/signed; boundary=----=_B\r\n\r\n------=_B\r\n"
    b"Content-Type: text/html\r\n\r\nx\r\n------=_B--\r\nepilogue text\r\n\r\n------=_A--",
    b"Content-Type: text/plain; name*0*=utf-8''a%20; name*1=b; filename*=x; c*2=z\r\n\r\nx",
    b'Subject: a\0b\r\nFrom: x\0y <a\0b@c>\r\nTo: "a\0b" <c@d>, x@[1\0.2] (co\0mment)\r\n'
    b'MIME-Version: 1.0\r\nContent-Type: text/plain; name="a\0b"\r\nContent-ID: <a\0b>\r\n'
    b'Content-Disposition: attachment; filename="c\0d"\r\n\r\nbo\0dy\r\n',
]


def _limits() -> list[bytes]:
    """Messages past Dovecot's limits: 100 nested parts, 10,000 parts in all."""
    deep = b"Content-Type: multipart/mixed; boundary=x0y\r\n\r\n" + b"".join(
        b"--x%dy\r\nContent-Type: multipart/mixed; boundary=x%dy\r\n\r\n" % (i, i + 1)
        for i in range(120)
    )
    forwarded = b"Subject: leaf\r\n\r\nleaf\r\n"
    for _ in range(110):
        forwarded = b"Content-Type: message/rfc822\r\n\r\n" + forwarded
    many = b"Content-Type: multipart/mixed; boundary=A\r\n\r\n" + (
        b"--A\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 10_010 + b"--A--\r\n"
    )
    return [deep + b"x\r\n", forwarded, many]


@pytest.fixture(scope="module")
def corpus() -> list[bytes]:
    return EDGE_CASES + _limits() + generate_corpus(7, 60) + generate_corpus(11, 40)


@pytest.fixture(scope="module")
def dovecot(corpus: list[bytes]) -> Iterator[Dovecot]:
    with dovecot_instances() as factory:
        server = _start(factory)
        for index, message in enumerate(corpus, start=1):
            # Maildir files keep the bytes exactly (no LF -> CRLF as APPEND clients do).
            server.install(USER, f"Maildir/new/{index:06d}.M{index}P1.test", message)
        yield server


def _start(factory: DovecotFactory) -> Dovecot:
    return factory(users=[DovecotUser(USER, PASSWORD)], imap=True)


@pytest.fixture(scope="module")
def imap(dovecot: Dovecot) -> Iterator[imaplib.IMAP4]:
    assert dovecot.imap_port is not None
    client = imaplib.IMAP4(dovecot.host, dovecot.imap_port)
    client.login(USER, PASSWORD)
    client.select("INBOX", readonly=True)
    yield client
    client.logout()


def _raw(data: list[None] | list[bytes | tuple[bytes, bytes]]) -> bytes:
    """Rebuild the untagged response bytes imaplib split at its literals."""
    out = bytearray()
    for item in data:
        if isinstance(item, tuple):
            out += item[0] + b"\r\n" + item[1]
        elif isinstance(item, bytes):
            out += item
    return bytes(out)


def _fetch_item(client: imaplib.IMAP4, number: int, request: str, key: bytes) -> bytes:
    status, data = client.fetch(str(number), f"({request})")
    assert status == "OK", (number, request)
    raw = _raw(data)
    start = raw.index(key + b" ") + len(key) + 1
    assert raw.endswith(b")"), raw[-40:]
    return raw[start:-1]


def _string_value(value: bytes) -> bytes:
    literal = re.match(rb"\{(\d+)\}\r\n", value)
    if literal:
        return value[literal.end() :]
    if value.startswith(b'"'):
        return value[1:-1]
    raise AssertionError(f"unexpected BODY[] value {value[:40]!r}")


def _sections(analysis: MessageAnalysis) -> list[tuple[Section, tuple[int, int] | None]]:
    part_map = analysis.part_map
    found: list[tuple[Section, tuple[int, int] | None]] = [
        (Section(), None),
        (Section(), (3, 17)),
        (Section((), "HEADER"), None),
        (Section((), "TEXT"), (0, 5)),
        (Section((), "HEADER.FIELDS", ("From", "Subject", "content-type")), None),
        (Section((), "HEADER.FIELDS.NOT", ("From", "Received")), None),
        (Section((99,)), None),
    ]

    def walk(index: int, path: tuple[int, ...]) -> None:
        found.extend([(Section(path), None), (Section(path, "MIME"), None)])
        part = part_map.parts[index]
        if part.is_rfc822:
            found.extend(
                [
                    (Section(path, "HEADER"), None),
                    (Section(path, "TEXT"), (1, 9)),
                    (Section(path, "HEADER.FIELDS", ("from",)), None),
                ]
            )
            child = index + 1
            if part_map.parts[child].is_multipart:
                for number, grandchild in enumerate(part_map.children(child), start=1):
                    walk(grandchild, (*path, number))
        elif part.is_multipart:
            for number, child in enumerate(part_map.children(index), start=1):
                walk(child, (*path, number))

    if part_map.parts[0].is_multipart:
        for number, child in enumerate(part_map.children(0), start=1):
            walk(child, (number,))
    else:
        walk(0, (1,))
    return found[:30]


def _serve(message: bytes, analysis: MessageAnalysis, section: Section,
           partial: tuple[int, int] | None) -> bytes:  # fmt: skip
    plan = analysis.part_map.plan(section, partial)
    if not plan.found:
        return b""
    stored = message[plan.offset : plan.offset + plan.length]
    if plan.header_fields is not None:
        return header_section(stored, plan, partial)
    stream = VirtualStream.for_plan(plan)
    out = b"".join(stream.feed(stored[i : i + 4096]) for i in range(0, len(stored), 4096))
    assert len(out) == plan.size
    return out


def test_structures_match_dovecot(imap: imaplib.IMAP4, corpus: list[bytes]) -> None:
    mismatches = []
    for number, message in enumerate(corpus, start=1):
        analysis = analyze_message(message, chunk_size=97)
        ours = {
            "ENVELOPE": analysis.envelope,
            "BODY": analysis.body,
            "BODYSTRUCTURE": analysis.bodystructure,
            "RFC822.SIZE": b"%d" % analysis.rfc822_size,
        }
        for item, expected in ours.items():
            theirs = _fetch_item(imap, number, item, item.encode())
            if theirs != expected:
                mismatches.append((number, item, theirs[:400], expected[:400]))
    assert not mismatches, mismatches[:5]


def test_sections_match_dovecot(imap: imaplib.IMAP4, corpus: list[bytes]) -> None:
    mismatches = []
    for number, message in enumerate(corpus, start=1):
        analysis = analyze_message(message)
        for section, partial in _sections(analysis):
            request = f"BODY.PEEK[{section}]" + (f"<{partial[0]}.{partial[1]}>" if partial else "")
            key = f"BODY[{section}]" + (f"<{partial[0]}>" if partial else "")
            theirs = _string_value(_fetch_item(imap, number, request, key.encode()))
            ours = _serve(message, analysis, section, partial)
            if theirs != ours:
                mismatches.append((number, request, theirs[:200], ours[:200]))
    assert not mismatches, mismatches[:5]


class _StoredMessage:
    """A MessageView over the raw bytes, as the store will provide one."""

    def __init__(self, number: int, message: bytes) -> None:
        self.uid = self.sequence = number
        self.flags: frozenset[str] = frozenset()
        self.internal_date = dt.datetime.now(dt.UTC)
        self.save_date = self.internal_date
        self.modseq = 1
        self._message = message
        analysis = analyze_message(message)
        self.size = analysis.rfc822_size
        self._part_map = analysis.part_map
        self._headers: dict[str, list[bytes]] = {}
        header = message[: self._part_map.parts[0].header_size]
        for field in re.split(rb"\r?\n(?![ \t])", header):
            name, colon, value = field.partition(b":")
            if colon:
                key = name.strip().lower().decode("latin-1")
                self._headers.setdefault(key, []).append(value.lstrip(b" \t"))

    def header_values(self, name: str) -> Sequence[bytes]:
        return self._headers.get(name.lower(), [])

    def text(self, *, include_headers: bool) -> Iterable[str]:
        def read(offset: int, length: int) -> Iterable[bytes]:
            data = self._message[offset : offset + length]
            return (data[i : i + 1000] for i in range(0, len(data), 1000))

        return iter_message_text(read, self._part_map, include_headers=include_headers)


SEARCH_QUERIES = [
    "SUBJECT caf", "FROM alice", "TO example.org", "BODY lazy", "TEXT report",
    "HEADER Message-ID example.org", "FROM zola", "SUBJECT re", "CC smith", "TEXT fox",
    'FROM "quoted local"', 'TEXT "Content-Type"', 'TO "<"', "SUBJECT résumé",
    "BODY résumé", "TO undisclosed", 'FROM "Dr. Carol"', "TEXT naïve", "BODY 日本語",
    "FROM MISSING", "TO SYNTAX_ERROR", 'SUBJECT "world  meeting"', "OR FROM bob TO bob",
    "NOT BODY the", 'BODY "soft break"', "SUBJECT テスト", "FROM Ünïcödé",
    "SENTSINCE 1-Jan-2020", "SENTBEFORE 1-Jan-2010", "SENTON 5-Jun-2019", "SENTON 1-Jan-1970",
    "LARGER 3000", "SMALLER 500",
]  # fmt: skip
"""Queries; a non-ASCII last word is sent as a literal (imaplib sends ASCII only)."""


def _dovecot_search(client: imaplib.IMAP4, query: str) -> tuple[list[int], bytes]:
    """Dovecot's answer, and the same command as bytes for our parser."""
    if query.isascii():
        status, data = client.search("UTF-8", query)
        command = b"a SEARCH CHARSET UTF-8 " + query.encode()
    else:
        key, value = query.rsplit(" ", 1)
        literal = value.encode()
        client.literal = literal  # type: ignore[assignment]  # typeshed says str; bytes work
        status, data = client.search("UTF-8", key)
        command = b"a SEARCH CHARSET UTF-8 %s {%d}\r\n" % (key.encode(), len(literal))
        command += literal
    assert status == "OK", query
    return sorted(int(n) for n in (data[0] or b"").split()), command


def test_search_matches_dovecot(imap: imaplib.IMAP4, corpus: list[bytes]) -> None:
    views = [_StoredMessage(number, message) for number, message in enumerate(corpus, 1)]
    context = SearchContext(len(views), len(views), dt.datetime.now(dt.UTC))
    mismatches = []
    for query in SEARCH_QUERIES:
        theirs, raw = _dovecot_search(imap, query)
        line, _, literal = raw.partition(b"\r\n")
        command = parse_line(line + b"\r\n", literal) if literal else parse_line(line)
        assert isinstance(command, Search)
        ours = [view.uid for view in search(command.program, context, views)]
        if theirs != ours:
            mismatches.append((query, sorted(set(theirs) ^ set(ours))[:10]))
    assert not mismatches, mismatches
