"""SORT (RFC 5256, with RFC 5267 ESORT's RETURN and RFC 5957 DISPLAY keys) and THREAD.

``SORT [RETURN (options)] (criteria) charset search-program`` and
``THREAD algorithm charset search-program``. The charset is required; RFC 5256 asks
for US-ASCII and UTF-8, and any other is answered NO [BADCHARSET].
"""

from __future__ import annotations

from typing import Final

from cryptmail.errors import UnknownCharset
from cryptmail.imap.wire import _requests as rq
from cryptmail.imap.wire._lexer import Cursor
from cryptmail.imap.wire._parser_search import SUPPORTED_CHARSETS, SearchParser

__all__ = ["SORT_KEYS", "THREAD_ALGORITHMS", "parse_sort", "parse_thread"]

SORT_KEYS: Final = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
THREAD_ALGORITHMS: Final = ("ORDEREDSUBJECT", "REFERENCES")
_RETURN_OPTIONS: Final = frozenset({"MIN", "MAX", "ALL", "COUNT"})
_MAX_CRITERIA: Final = 32


def _charset(cur: Cursor, tag: str) -> str:
    cur.sp()
    name = cur.astring().decode("ascii", "replace").upper()
    if name not in SUPPORTED_CHARSETS:
        raise UnknownCharset("Unknown charset", tag)  # the session adds [BADCHARSET (...)]
    return name


def _returns(cur: Cursor) -> tuple[str, ...]:
    cur.atom()
    cur.sp()
    cur.expect_byte(b"(", "'('")
    words: list[str] = []
    while not cur.skip_byte(b")"):
        if words:
            cur.sp()
        word = cur.atom("a SORT return option").upper()
        if word not in _RETURN_OPTIONS:
            raise cur.fail("Unknown SORT return option")
        words.append(word)
    cur.sp()
    return tuple(dict.fromkeys(words))


def parse_sort(cur: Cursor, tag: str, uid: bool) -> rq.Command:
    cur.sp()
    returns = None
    if cur.lookahead(7).upper() == b"RETURN ":
        returns = _returns(cur)
    cur.expect_byte(b"(", "'('")
    criteria: list[tuple[str, bool]] = []
    reverse = False
    while True:
        word = cur.atom("a sort criterion").upper()
        if word == "REVERSE" and not reverse:
            reverse = True
            cur.sp()
            continue
        if word not in SORT_KEYS:
            raise cur.fail("Unknown sort criterion")
        criteria.append((word, reverse))
        reverse = False
        if len(criteria) > _MAX_CRITERIA:
            raise cur.fail("Too many sort criteria")
        if cur.skip_byte(b")"):
            break
        cur.sp()
    charset = _charset(cur, tag)
    cur.sp()
    program = SearchParser(cur, "utf-8").key_list_after_space()
    return rq.Sort(tag, tuple(criteria), program, charset, uid, returns)


def parse_thread(cur: Cursor, tag: str, uid: bool) -> rq.Command:
    cur.sp()
    algorithm = cur.atom("a threading algorithm").upper()
    if algorithm not in THREAD_ALGORITHMS:
        raise cur.fail("Unknown threading algorithm")
    charset = _charset(cur, tag)
    cur.sp()
    program = SearchParser(cur, "utf-8").key_list_after_space()
    return rq.Thread(tag, algorithm, program, charset, uid)
