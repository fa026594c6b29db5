"""RETURN options of SEARCH and SORT (RFC 4731, 5182 SAVE, 5267 UPDATE/CONTEXT/PARTIAL),
``$`` (RFC 5182) as a sequence set, CANCELUPDATE and FETCH PREVIEW (RFC 8970)."""

from __future__ import annotations

import pytest

from cryptmail.errors import ParseError
from cryptmail.imap.wire._parser import parse_line
from cryptmail.imap.wire._requests import (
    CancelUpdate,
    Copy,
    Expunge,
    Fetch,
    FetchAttribute,
    Search,
    SearchAnd,
    SearchSequence,
    Sort,
    Store,
)
from cryptmail.imap.wire._sequence import SequenceSet

SAVED = SequenceSet((), saved=True)


def test_search_return_options() -> None:
    command = parse_line(b"a SEARCH RETURN (save MIN update Context SAVE) SEEN")
    assert isinstance(command, Search)
    assert command.returns == ("SAVE", "MIN", "UPDATE", "CONTEXT") and command.partial is None
    command = parse_line(b"a UID SEARCH RETURN (PARTIAL 5:1 COUNT) ALL")
    assert isinstance(command, Search)
    assert command.returns == ("COUNT",) and command.partial == (1, 5)
    big = parse_line(b"a SEARCH RETURN (PARTIAL 1:4294967295) ALL")
    assert isinstance(big, Search) and big.partial == (1, 4294967295)


def test_sort_return_partial_and_update() -> None:
    command = parse_line(b"a UID SORT RETURN (UPDATE PARTIAL 2:3) (DATE) UTF-8 ALL")
    assert isinstance(command, Sort)
    assert command.returns == ("UPDATE",) and command.partial == (2, 3) and command.uid


@pytest.mark.parametrize(
    "line",
    [
        b"a SEARCH RETURN (PARTIAL 0:0) ALL", b"a SEARCH RETURN (PARTIAL 0:5) ALL",
        b"a SEARCH RETURN (PARTIAL 1:4294967296) ALL", b"a SEARCH RETURN (PARTIAL 1) ALL",
        b"a SEARCH RETURN (PARTIAL) ALL", b"a SEARCH RETURN (PARTIAL 1:2 ALL) ALL",
        b"a SEARCH RETURN (ALL PARTIAL 1:2) ALL", b"a SEARCH RETURN (PARTIAL 1:2 PARTIAL 1:2) ALL",
        b"a SEARCH RETURN (PARTIAL -1:5) ALL", b"a SEARCH RETURN (PARTIAL 1:*) ALL",
        b"a SEARCH RETURN (SAVE FOO) ALL", b"a SEARCH RETURN (SAVE", b"a SEARCH RETURN (SAVE) ",
        b"a SEARCH RETURN (" + b"MIN " * 16 + b"MIN) ALL", b"a SORT RETURN (SAVE) (DATE) UTF-8 ALL",
        b"a FETCH 1,$ FLAGS", b"a FETCH $,1 FLAGS", b"a FETCH $:3 FLAGS", b"a FETCH $$ FLAGS",
        b"a SEARCH 1:$", b"a SELECT INBOX (QRESYNC (1 1 $))", b"a CANCELUPDATE",
        b"a CANCELUPDATE tag", b'a CANCELUPDATE "t1" x', b'a CANCELUPDATE "t1"  "t2"',
        b"a FETCH 1 (PREVIEW ())", b"a FETCH 1 (PREVIEW (FUZZY))", b"a FETCH 1 PREVIEW.LAZY",
        b"a FETCH 1 (PREVIEW (LAZY)",
    ],
)  # fmt: skip
def test_malformed_is_a_parse_error(line: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_line(line)
    assert info.value.tag == "a"


def test_dollar_wherever_a_set_is_taken() -> None:
    assert parse_line(b"a FETCH $ FLAGS") == Fetch("a", SAVED, (FetchAttribute("FLAGS"),))
    fetched = parse_line(b"a UID FETCH $ FLAGS")
    assert isinstance(fetched, Fetch) and fetched.sequence.saved and fetched.uid
    stored = parse_line(b"a STORE $ +FLAGS (\\Seen)")
    assert isinstance(stored, Store) and stored.sequence == SAVED
    assert parse_line(b"a UID COPY $ Work") == Copy("a", SAVED, "Work", uid=True)
    assert parse_line(b"a UID EXPUNGE $") == Expunge("a", SAVED)
    search = parse_line(b"a SEARCH $ UID $")
    assert isinstance(search, Search)
    assert search.program == SearchAnd((SearchSequence(SAVED), SearchSequence(SAVED, uid=True)))
    assert str(SAVED) == "$"
    with pytest.raises(ParseError):
        SAVED.resolve(10)


def test_cancelupdate() -> None:
    assert parse_line(b'a CANCELUPDATE "t1"') == CancelUpdate("a", ("t1",))
    assert parse_line(b'a CANCELUPDATE "t1" {2}\r\n', b"t2") == CancelUpdate("a", ("t1", "t2"))


def test_preview_items() -> None:
    items = parse_line(b"a FETCH 1 (PREVIEW UID)")
    assert isinstance(items, Fetch)
    assert items.items == (FetchAttribute("PREVIEW"), FetchAttribute("UID"))
    lazy = parse_line(b"a FETCH 1 (preview (lazy))")
    assert isinstance(lazy, Fetch) and lazy.items == (FetchAttribute("PREVIEW.LAZY"),)
    both = parse_line(b"a FETCH 1 (PREVIEW (LAZY) PREVIEW)")
    assert isinstance(both, Fetch) and both.items == (FetchAttribute("PREVIEW"),)
    bare = parse_line(b"a FETCH 1 PREVIEW")
    assert isinstance(bare, Fetch) and bare.items == (FetchAttribute("PREVIEW"),)
