"""SEARCH programs (RFC 3501 search-key, RFC 7162 MODSEQ, RFC 5032 OLDER/YOUNGER)."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Final

from cryptmail.errors import UnknownCharset
from cryptmail.imap.wire._lexer import ATOM_CHARS, MAX_MODSEQ, Cursor
from cryptmail.imap.wire._requests import (
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchOlder,
    SearchOr,
    SearchSequence,
    SearchSize,
    SearchText,
)
from cryptmail.imap.wire._sequence import SequenceSet

__all__ = ["SearchParser", "check_charset"]

MAX_DEPTH: Final = 64
"""How deep NOT/OR/parentheses may nest; deeper programs are refused, not recursed."""

_FLAG_KEYS: Final = {
    "ANSWERED": ("\\Answered", True),
    "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True),
    "UNDELETED": ("\\Deleted", False),
    "DRAFT": ("\\Draft", True),
    "UNDRAFT": ("\\Draft", False),
    "FLAGGED": ("\\Flagged", True),
    "UNFLAGGED": ("\\Flagged", False),
    "SEEN": ("\\Seen", True),
    "UNSEEN": ("\\Seen", False),
    "RECENT": ("\\Recent", True),
    "OLD": ("\\Recent", False),
}
_HEADER_KEYS: Final = frozenset({"BCC", "CC", "FROM", "SUBJECT", "TO"})
_DATE_KEYS: Final = {
    "BEFORE": ("before", False),
    "ON": ("on", False),
    "SINCE": ("since", False),
    "SENTBEFORE": ("before", True),
    "SENTON": ("on", True),
    "SENTSINCE": ("since", True),
}
_SAVED_DATE_KEYS: Final = {"SAVEDBEFORE": "before", "SAVEDON": "on", "SAVEDSINCE": "since"}
"""RFC 8514: the same on the save date (every mailbox here keeps one)."""
_SEQ_CHARS: Final = frozenset(b"0123456789:,*$")  # "$": RFC 5182's saved result
SUPPORTED_CHARSETS: Final = ("US-ASCII", "UTF-8")


def check_charset(name: str, tag: str | None) -> str:
    """Return the Python codec for a SEARCH CHARSET, or raise UnknownCharset."""
    try:
        return codecs.lookup(name).name
    except LookupError:
        # The session adds the [BADCHARSET (...)] code itself.
        raise UnknownCharset("Unknown charset", tag) from None


class SearchParser:
    """Parses ``1*(SP search-key)`` with strings decoded by ``codec``."""

    def __init__(self, cur: Cursor, codec: str) -> None:
        self._cur = cur
        self._codec = codec
        self._keys: dict[str, Callable[[int], SearchKey]] = {
            "ALL": lambda _d: SearchAnd(()),
            "NEW": lambda _d: SearchAnd(
                (SearchFlag("\\Recent", True), SearchFlag("\\Seen", False))
            ),
            "KEYWORD": lambda _d: SearchFlag(self._sp_keyword(), True),
            "UNKEYWORD": lambda _d: SearchFlag(self._sp_keyword(), False),
            "HEADER": self._header,
            "BODY": lambda _d: SearchText(self._sp_string(), include_headers=False),
            "TEXT": lambda _d: SearchText(self._sp_string(), include_headers=True),
            "LARGER": lambda _d: SearchSize("larger", self._sp_number()),
            "SMALLER": lambda _d: SearchSize("smaller", self._sp_number()),
            "OLDER": lambda _d: SearchOlder(self._sp_number(nonzero=True), older=True),
            "YOUNGER": lambda _d: SearchOlder(self._sp_number(nonzero=True), older=False),
            "UID": lambda _d: SearchSequence(self._sp_sequence(), uid=True),
            "NOT": lambda d: SearchNot(self._sp_key(d)),
            "OR": lambda d: SearchOr(self._sp_key(d), self._sp_key(d)),
            "MODSEQ": self._modseq,
        }

    def key_list_after_space(self) -> SearchAnd:
        """``search-key *(SP search-key)`` to the end of the command (first SP eaten)."""
        keys = [self.key(0)]
        while not self._cur.at_end():
            self._cur.sp()
            keys.append(self.key(0))
        return SearchAnd(tuple(keys))

    # -- pieces ----------------------------------------------------------------------

    def _text(self, raw: bytes) -> str:
        try:
            return raw.decode(self._codec)
        except UnicodeDecodeError as exc:
            raise self._cur.fail("Search string is not valid in its charset") from exc

    def _sp_string(self) -> str:
        self._cur.sp()
        return self._text(self._cur.astring())

    def _sp_keyword(self) -> str:
        self._cur.sp()
        return self._cur.atom("a keyword")

    def _sp_number(self, *, nonzero: bool = False) -> int:
        self._cur.sp()
        return self._cur.number(nonzero=nonzero)

    def _sp_sequence(self) -> SequenceSet:
        self._cur.sp()
        return self._sequence()

    def _sequence(self) -> SequenceSet:
        text = self._cur.word(_SEQ_CHARS, "a sequence set")
        try:
            return SequenceSet.parse(text)
        except Exception as exc:  # ParseError without the tag
            raise self._cur.fail("Invalid sequence set") from exc

    def _sp_key(self, depth: int) -> SearchKey:
        self._cur.sp()
        return self.key(depth + 1)

    def _header(self, _depth: int) -> SearchKey:
        self._cur.sp()
        name = self._cur.astring()
        try:
            field = name.decode("ascii")
        except UnicodeDecodeError as exc:
            raise self._cur.fail("Invalid header field name") from exc
        return SearchHeader(field, self._sp_string())

    def _modseq(self, _depth: int) -> SearchKey:
        self._cur.sp()
        entry = None
        if self._cur.peek() == ord('"'):
            entry_name = self._text(self._cur.string())
            self._cur.sp()
            entry_type = self._cur.atom("an entry type").lower()
            if entry_type not in ("priv", "shared", "all"):
                raise self._cur.fail("Invalid MODSEQ entry type")
            entry = (entry_name, entry_type)
            self._cur.sp()
        return SearchModSeq(self._cur.number(limit=MAX_MODSEQ), entry)

    def key(self, depth: int) -> SearchKey:
        cur = self._cur
        if depth > MAX_DEPTH:
            raise cur.fail("Search program nests too deeply")
        char = cur.peek()
        if char == ord("("):
            cur.expect_byte(b"(", "'('")
            keys = [self.key(depth + 1)]
            while not cur.skip_byte(b")"):
                cur.sp()
                keys.append(self.key(depth + 1))
            return keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))
        if char in _SEQ_CHARS:
            return SearchSequence(self._sequence())
        word = cur.word(ATOM_CHARS, "a search key").upper()
        if word in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[word]
            return SearchFlag(flag, present)
        if word in _HEADER_KEYS:
            return SearchHeader(word.capitalize() if word != "CC" else "Cc", self._sp_string())
        if word in _DATE_KEYS:
            relation, sent = _DATE_KEYS[word]
            cur.sp()
            return SearchDate(relation, cur.date(), sent=sent)  # type: ignore[arg-type]
        if word in _SAVED_DATE_KEYS:
            cur.sp()
            return SearchDate(_SAVED_DATE_KEYS[word], cur.date(), saved=True)  # type: ignore[arg-type]
        if word == "SAVEDATESUPPORTED":  # RFC 8514: every mailbox supports it
            return SearchAnd(())
        handler = self._keys.get(word)
        if handler is None:
            raise cur.fail("Unknown search key")
        return handler(depth)
