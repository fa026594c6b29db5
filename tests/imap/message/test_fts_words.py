"""The words the index stores for a message, and the property that matters: for random
mailboxes and search strings, SEARCH answered with the index equals SEARCH without it."""

from __future__ import annotations

import base64
import datetime as dt
import os
import quopri
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptmail.imap.message._analysis import analyze_message
from cryptmail.imap.message._fts_words import PIECE, header_fields, message_words
from cryptmail.imap.message._search import MessageView, SearchContext, compile_search
from cryptmail.imap.message._textsearch import fold_text, iter_message_text
from cryptmail.imap.wire._requests import SearchAnd, SearchHeader, SearchKey, SearchText
from cryptmail.store import BlobId
from cryptmail.store.fulltext import (
    BODY,
    BODY_ONLY,
    TEXT_EXTRA,
    Needle,
    build_segment,
    needle_terms,
)
from cryptmail.store.fulltext._index import _lookup

NOW = dt.datetime(2024, 3, 10, tzinfo=dt.UTC)


@dataclass
class View:
    """A MessageView over raw bytes that reads as the server's view does."""

    uid: int
    message: bytes
    blob_id: BlobId
    sequence: int = 1
    flags: frozenset[str] = frozenset()
    internal_date: dt.datetime = NOW
    modseq: int = 1

    @property
    def save_date(self) -> dt.datetime:
        return self.internal_date

    @property
    def size(self) -> int:
        return len(self.message)

    def header_values(self, name: str) -> Sequence[bytes]:
        root = analyze_message(self.message).part_map.parts[0]
        header = self.message[root.header_offset : root.header_offset + root.header_size]
        wanted = name.lower().encode()
        return [value for key, value in header_fields(header) if key == wanted]

    def text(self, *, include_headers: bool) -> Iterable[str]:
        part_map = analyze_message(self.message).part_map

        def read(offset: int, length: int) -> Iterator[bytes]:
            end = offset + length
            while offset < end:
                yield self.message[offset : min(end, offset + PIECE)]
                offset += PIECE

        return iter_message_text(read, part_map, include_headers=include_headers)


def test_fields_of_a_simple_message() -> None:
    message = (
        b"From: Alice <alice@example.com>\r\nSubject: =?utf-8?q?Caf=C3=A9_plans?=\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
        b"quoted-printable\r\n\r\nHello W=C3=B6rld, zebra\r\n"
    )
    words = message_words(message)
    assert words[BODY] == {"hello", unicodedata.normalize("NFKD", "wörld"), "zebra"}
    assert "subject" in words[TEXT_EXTRA] and "zebra" not in words[TEXT_EXTRA]
    assert words[BODY_ONLY] == set()
    assert words[4] == {unicodedata.normalize("NFKD", "café"), "plans"}
    assert words[5] == {"alice", "example", "com"}


def test_a_word_joined_across_two_bodies_is_body_only() -> None:
    message = (
        b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: text/plain\r\n"
        b"\r\nfoo\r\n--z\r\nContent-Type: text/plain\r\n\r\nbar\r\n--z--\r\n"
    )
    words = message_words(message)
    assert "foobar" in words[BODY] and "foobar" in words[BODY_ONLY]


_WORDS = ["hello", "Hélló", "straße", "STRASSE", "東京", "re:", "a.b", "x-y", "ünïcode", "ﬁne"]
_alphabet = st.sampled_from([*_WORDS, " ", ", ", "\r\n", "-", "ab", "e"])
_text = st.lists(_alphabet, max_size=25).map("".join)


def _encode(body: str, how: str) -> tuple[bytes, bytes]:
    raw = body.encode("utf-8")
    if how == "base64":
        return b"base64", base64.encodebytes(raw).replace(b"\n", b"\r\n")
    if how == "qp":
        return b"quoted-printable", quopri.encodestring(raw).replace(b"\n", b"\r\n")
    return b"8bit", raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@st.composite
def _messages(draw: st.DrawFn) -> bytes:
    subject = draw(_text).replace("\r\n", " ")
    sender = draw(st.sampled_from(["Alice <alice@example.com>", '"Bö b" <b@x.org>', "bad@"]))
    parts = draw(
        st.lists(
            st.tuples(_text, st.sampled_from(["8bit", "base64", "qp"])), min_size=1, max_size=3
        )
    )
    head = f"From: {sender}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n".encode()
    bodies = []
    for body, how in parts:
        cte, data = _encode(body, how)
        bodies.append(
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: " + cte
            + b"\r\n\r\n" + data
        )  # fmt: skip
    if len(bodies) == 1:
        return head + bodies[0]
    inner = b"".join(b"--zz\r\n" + b + b"\r\n" for b in bodies)
    return head + b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n" + inner + b"--zz--\r\n"


def _needles(texts: list[str]) -> st.SearchStrategy[str]:
    pieces = [t[i:j] for t in texts for i in range(0, len(t), 3) for j in (i + 2, i + 5, i + 9)]
    return st.sampled_from([p for p in pieces if p.strip()] or ["hello"]) | st.sampled_from(_WORDS)


def _kind(key: SearchText | SearchHeader) -> str:
    if isinstance(key, SearchText):
        return "text" if key.include_headers else "body"
    return key.field.lower()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_messages(), min_size=1, max_size=6), st.data())
def test_indexed_search_equals_slow_search(messages: list[bytes], data: st.DataObject) -> None:
    views = [View(uid, m, BlobId(os.urandom(16))) for uid, m in enumerate(messages, start=1)]
    # Some messages stay unindexed: they must be searched the slow way.
    indexed = [v for v in views if data.draw(st.booleans())]
    segment = build_segment([(v.blob_id, message_words(v.message)) for v in indexed])
    texts = [m.decode("utf-8", "replace") for m in messages]
    key_type = data.draw(st.sampled_from(["BODY", "TEXT", "SUBJECT", "FROM"]))
    value = data.draw(_needles(texts))
    key: SearchText | SearchHeader
    if key_type in ("BODY", "TEXT"):
        key = SearchText(value, include_headers=key_type == "TEXT")
    else:
        key = SearchHeader(key_type.capitalize(), value)
    terms, whole = needle_terms(fold_text(value))
    lookup = _lookup([segment], Needle(_kind(key), terms, whole))

    def oracle(asked: SearchKey, view: MessageView) -> bool | None:
        assert asked is key
        return lookup.verdict(view.blob_id)  # type: ignore[attr-defined]

    program = SearchAnd((key,))
    slow = compile_search(program, SearchContext(10, 10, NOW))
    fast = compile_search(program, SearchContext(10, 10, NOW, oracle=oracle))
    assert [v.uid for v in views if fast(v)] == [v.uid for v in views if slow(v)]
